//! A one-page HTML metrics report that opens offline: styles inline, pictures as PNG data URIs.

use base64::Engine;
use image::{ImageFormat, RgbImage};
use serde_json::{Map, Value};
use std::fmt::Write;
use std::io::Cursor;

/// PNG bytes of an image. Encoding an in-memory RGB buffer cannot fail in practice, but the
/// error is still passed on rather than hidden.
pub fn encode_png(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
    Ok(bytes)
}

/// `data:image/png;base64,...` for embedding in HTML.
pub fn png_data_uri(image: &RgbImage) -> anyhow::Result<String> {
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(encode_png(image)?)))
}

/// Save as PNG, with an error that names the file.
pub fn save_png(image: &RgbImage, path: impl AsRef<std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = path.as_ref();
    image.save_with_format(path, ImageFormat::Png).with_context(|| format!("cannot write PNG {}", path.display()))
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}h2{font-size:1.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}\
td:first-child,th:first-child{text-align:left}tr:nth-child(even) td{background:#fafafa}\
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}\
pre{background:#f6f6f6;padding:.6em;overflow:auto}";

/// One self-contained HTML page: `title`, the numbers in `metrics` as tables, then each figure
/// (caption, picture) embedded as a PNG data URI.
///
/// How `metrics` is laid out, so COCO-style results read naturally:
/// - top-level scalars go in a "Summary" key/value table;
/// - objects of scalars (`{"segm": {"AP": ..}, "bbox": {"AP": ..}}`) become one row each, and
///   objects with the same keys share a table, so segm and bbox line up column by column;
/// - arrays of objects (`"per_class": [{"class": "ship", "AP": ..}, ..]`) become a table with
///   one column per key;
/// - anything else is shown as pretty-printed JSON.
///
/// Numbers are shown with 3 decimals (integers as they are); `null` as an em dash.
pub fn html_report(title: &str, metrics: &Value, figures: &[(&str, &RgbImage)]) -> String {
    let mut html = String::new();
    let title = escape_html(title);
    let _ = write!(html, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n");
    write_metrics(&mut html, metrics);
    for (caption, image) in figures {
        let caption = escape_html(caption);
        match png_data_uri(image) {
            Ok(uri) => {
                let _ = write!(html, "<figure>\n<img src=\"{uri}\" alt=\"{caption}\" width=\"{}\" height=\"{}\">\n<figcaption>{caption}</figcaption>\n</figure>\n", image.width(), image.height());
            }
            Err(err) => {
                let _ = writeln!(
                    html,
                    "<p>Figure \u{201c}{caption}\u{201d} could not be encoded: {}</p>",
                    escape_html(&err.to_string())
                );
            }
        }
    }
    html.push_str("</body>\n</html>\n");
    html
}

/// serde_json maps come back sorted by key, which would put APl before APm; order COCO's
/// summary numbers as pycocotools prints them, names (string columns) first, the rest by name.
const COCO_ORDER: [&str; 12] = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

fn column_order(columns: &mut [&String], is_text: impl Fn(&str) -> bool) {
    columns.sort_by_key(|c| {
        let rank = if is_text(c) { 0 } else { COCO_ORDER.iter().position(|k| k == c).map_or(100, |p| p + 1) };
        (rank, c.to_string())
    });
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

/// One report table cell as HTML-escaped text: integers as they are, other finite numbers to
/// three decimals, null as a dash.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Null => "\u{2014}".into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.is_finite() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Value::String(s) => escape_html(s),
        Value::Bool(b) => b.to_string(),
        other => escape_html(&other.to_string()),
    }
}

fn write_metrics(html: &mut String, metrics: &Value) {
    let Value::Object(map) = metrics else {
        if !metrics.is_null() {
            let _ = writeln!(
                html,
                "<pre>{}</pre>",
                escape_html(&serde_json::to_string_pretty(metrics).unwrap_or_default())
            );
        }
        return;
    };
    let scalars: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| is_scalar(v)).collect();
    if !scalars.is_empty() {
        html.push_str("<h2>Summary</h2>\n<table>\n<tr><th>metric</th><th>value</th></tr>\n");
        for (key, value) in scalars {
            let _ = writeln!(html, "<tr><td>{}</td><td>{}</td></tr>", escape_html(key), format_value(value));
        }
        html.push_str("</table>\n");
    }

    // Group flat objects by their key list, keeping first-seen order.
    type NamedRow<'a> = (&'a String, &'a Map<String, Value>);
    let mut groups: Vec<(Vec<&String>, Vec<NamedRow>)> = Vec::new();
    for (key, value) in map {
        if let Value::Object(inner) = value {
            if !inner.is_empty() && inner.values().all(is_scalar) {
                let mut keys: Vec<&String> = inner.keys().collect();
                column_order(&mut keys, |k| inner[k].is_string());
                match groups.iter_mut().find(|(k, _)| *k == keys) {
                    Some((_, rows)) => rows.push((key, inner)),
                    None => groups.push((keys, vec![(key, inner)])),
                }
            }
        }
    }
    for (columns, rows) in &groups {
        let heading: Vec<String> = rows.iter().map(|(name, _)| escape_html(name)).collect();
        let _ = write!(html, "<h2>{}</h2>\n<table>\n<tr><th></th>", heading.join(", "));
        for column in columns {
            let _ = write!(html, "<th>{}</th>", escape_html(column));
        }
        html.push_str("</tr>\n");
        for (name, inner) in rows {
            let _ = write!(html, "<tr><td>{}</td>", escape_html(name));
            for column in columns {
                let _ = write!(html, "<td>{}</td>", format_value(&inner[column.as_str()]));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }

    for (key, value) in map {
        match value {
            Value::Object(inner) if !inner.is_empty() && inner.values().all(is_scalar) => {}
            Value::Array(items)
                if !items.is_empty()
                    && items.iter().all(|i| matches!(i, Value::Object(o) if o.values().all(is_scalar))) =>
            {
                let mut columns: Vec<&String> = Vec::new();
                for item in items {
                    if let Value::Object(o) = item {
                        for k in o.keys() {
                            if !columns.contains(&k) {
                                columns.push(k);
                            }
                        }
                    }
                }
                column_order(&mut columns, |k| items.iter().any(|i| i.get(k).is_some_and(Value::is_string)));
                let _ = write!(html, "<h2>{}</h2>\n<table>\n<tr>", escape_html(key));
                for column in &columns {
                    let _ = write!(html, "<th>{}</th>", escape_html(column));
                }
                html.push_str("</tr>\n");
                for item in items {
                    html.push_str("<tr>");
                    for column in &columns {
                        let _ =
                            write!(html, "<td>{}</td>", item.get(column.as_str()).map_or(String::new(), format_value));
                    }
                    html.push_str("</tr>\n");
                }
                html.push_str("</table>\n");
            }
            v if is_scalar(v) => {}
            other => {
                let _ = write!(
                    html,
                    "<h2>{}</h2>\n<pre>{}</pre>\n",
                    escape_html(key),
                    escape_html(&serde_json::to_string_pretty(other).unwrap_or_default())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use serde_json::json;

    #[test]
    fn report_has_tables_and_decodable_embedded_png() {
        let metrics = json!({
            "model": "maskrcnn_resnet50_fpn <v2>",
            "images": 33,
            "segm": {"AP": 0.41234, "AP50": 0.6, "AP75": 0.43, "APs": 0.1, "APm": 0.2, "APl": 0.3},
            "bbox": {"AP": 0.45, "AP50": 0.65, "AP75": 0.47, "APs": 0.1, "APm": 0.2, "APl": 0.3},
            "per_class": [{"class": "ship", "AP": 0.5}, {"class": "harbor", "AP": null, "count": 3}],
            "confusion": [[1, 2], [3, 4]]
        });
        let picture = RgbImage::from_fn(7, 5, |x, y| Rgb([x as u8 * 30, y as u8 * 40, 200]));
        let html = html_report("Report <test>", &metrics, &[("Loss & curves", &picture)]);

        assert!(html.contains("<title>Report &lt;test&gt;</title>"));
        assert!(html.contains("<td>model</td><td>maskrcnn_resnet50_fpn &lt;v2&gt;</td>"));
        assert!(html.contains("<td>images</td><td>33</td>"));
        // segm and bbox share keys, so they share one table.
        assert!(html.contains("<h2>bbox, segm</h2>"));
        assert!(html
            .contains("<tr><th></th><th>AP</th><th>AP50</th><th>AP75</th><th>APs</th><th>APm</th><th>APl</th></tr>"));
        assert!(html.contains("<tr><td>segm</td><td>0.412</td><td>0.600</td><td>0.430</td><td>0.100</td><td>0.200</td><td>0.300</td></tr>"));
        assert!(html.contains("<tr><th>class</th><th>AP</th><th>count</th></tr>"));
        assert!(html.contains("<tr><td>harbor</td><td>\u{2014}</td><td>3</td></tr>"));
        assert!(html.contains("<tr><td>ship</td><td>0.500</td><td></td></tr>"));
        assert!(html.contains("<h2>confusion</h2>\n<pre>"));
        assert!(html.contains("<figcaption>Loss &amp; curves</figcaption>"));
        assert!(!html.contains("http"), "no external resources");

        let start = html.find("data:image/png;base64,").unwrap() + "data:image/png;base64,".len();
        let end = start + html[start..].find('"').unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(&html[start..end]).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(decoded, picture);
    }

    #[test]
    fn non_object_metrics_are_shown_as_json() {
        let html = html_report("t", &json!([1, 2]), &[]);
        assert!(html.contains("<pre>[\n  1,\n  2\n]</pre>"));
        let html = html_report("t", &Value::Null, &[]);
        assert!(!html.contains("<table>"));
    }

    #[test]
    fn save_png_names_the_path_on_error() {
        let err = save_png(&RgbImage::new(2, 2), "/nonexistent-dir/x.png").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-dir/x.png"));
    }
}
