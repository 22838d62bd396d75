//! Side-by-side grids: ground truth next to predictions, one sample per row.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use crate::draw::fill_rect;
use crate::font::{draw_text, text_size, CELL_WIDTH};

const BACKGROUND: [u8; 3] = [255, 255, 255];
const LETTERBOX: [u8; 3] = [232, 232, 232];
const TEXT: [u8; 3] = [25, 25, 25];
const MARGIN: u32 = 8;

/// Ground truth (left) beside predictions (right), one row per sample, with column headers
/// "Ground truth" / "Predictions" and an optional title line above each row (e.g. the file name;
/// missing titles are left blank). Each picture is scaled to fit `cell_size` (width, height) with
/// its aspect ratio kept and centred on a grey letterbox, so pictures of any size line up.
pub fn results_grid<S: AsRef<str>>(rows: &[(RgbImage, RgbImage)], titles: &[S], cell_size: (u32, u32)) -> RgbImage {
    let cells: Vec<Vec<&RgbImage>> = rows.iter().map(|(gt, pred)| vec![gt, pred]).collect();
    image_grid(&cells, &["Ground truth", "Predictions"], titles, cell_size)
}

/// General form of [`results_grid`]: any number of columns, each with its header. Rows shorter
/// than the header count leave their remaining cells empty.
pub fn image_grid<S: AsRef<str>>(
    rows: &[Vec<&RgbImage>],
    column_headers: &[&str],
    titles: &[S],
    cell_size: (u32, u32),
) -> RgbImage {
    let (cell_w, cell_h) = (cell_size.0.max(16), cell_size.1.max(16));
    let columns = column_headers.len().max(rows.iter().map(Vec::len).max().unwrap_or(0)).max(1) as u32;
    let header_scale = if cell_w >= 200 { 2 } else { 1 };
    let title_scale = if cell_w >= 320 { 2 } else { 1 };
    let header_h = text_size("Hg", header_scale).1 + 2 * MARGIN;
    let has_titles = titles.iter().any(|t| !t.as_ref().is_empty());
    let title_h = if has_titles { text_size("Hg", title_scale).1 + MARGIN } else { 0 };
    let row_h = title_h + cell_h + MARGIN;
    let width = MARGIN + columns * (cell_w + MARGIN);
    let height = header_h + rows.len() as u32 * row_h;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb(BACKGROUND));

    for (col, header) in column_headers.iter().enumerate() {
        let text = fit_text(header, cell_w, header_scale);
        let text_w = text_size(&text, header_scale).0;
        let x = MARGIN + col as u32 * (cell_w + MARGIN) + (cell_w.saturating_sub(text_w)) / 2;
        draw_text(&mut canvas, x as i64, MARGIN as i64, &text, header_scale, TEXT);
    }

    for (row_index, row) in rows.iter().enumerate() {
        let top = header_h + row_index as u32 * row_h;
        if let Some(title) = titles.get(row_index) {
            let text = fit_text(title.as_ref(), width - 2 * MARGIN, title_scale);
            draw_text(&mut canvas, MARGIN as i64, top as i64, &text, title_scale, TEXT);
        }
        let cell_top = top + title_h;
        for col in 0..columns {
            let left = MARGIN + col * (cell_w + MARGIN);
            fill_rect(
                &mut canvas,
                left as i64,
                cell_top as i64,
                (left + cell_w - 1) as i64,
                (cell_top + cell_h - 1) as i64,
                LETTERBOX,
            );
            if let Some(picture) = row.get(col as usize) {
                let fitted = fit_into(picture, cell_w, cell_h);
                let x = left + (cell_w - fitted.width()) / 2;
                let y = cell_top + (cell_h - fitted.height()) / 2;
                imageops::replace(&mut canvas, &fitted, x as i64, y as i64);
            }
        }
    }
    canvas
}

/// Scale to fit inside (max_w, max_h) keeping the aspect ratio. Pictures that already fit are
/// kept at their size: enlarging would only blur them.
fn fit_into(picture: &RgbImage, max_w: u32, max_h: u32) -> RgbImage {
    let (w, h) = picture.dimensions();
    if w == 0 || h == 0 {
        return RgbImage::new(0, 0);
    }
    if w <= max_w && h <= max_h {
        return picture.clone();
    }
    let ratio = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    let new_w = ((w as f64 * ratio).round() as u32).clamp(1, max_w);
    let new_h = ((h as f64 * ratio).round() as u32).clamp(1, max_h);
    imageops::resize(picture, new_w, new_h, FilterType::Triangle)
}

/// Cut text that would not fit in `max_width` pixels, marking the cut with "..".
pub(crate) fn fit_text(text: &str, max_width: u32, scale: u32) -> String {
    if text_size(text, scale).0 <= max_width {
        return text.to_string();
    }
    let max_chars = ((max_width / scale.max(1) + 1) / CELL_WIDTH) as usize;
    if max_chars <= 2 {
        return text.chars().take(max_chars).collect();
    }
    let kept: String = text.chars().take(max_chars - 2).collect();
    format!("{kept}..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_fitted_side_by_side_under_the_headers() {
        let gt = RgbImage::from_pixel(200, 100, Rgb([255, 0, 0]));
        let pred = RgbImage::from_pixel(50, 100, Rgb([0, 0, 255]));
        let rows = vec![(gt.clone(), pred.clone()), (gt, pred)];
        let grid = results_grid(&rows, &["first.jpg", "second.jpg"], (100, 80));
        let header_h = text_size("Hg", 1).1 + 2 * MARGIN;
        let title_h = text_size("Hg", 1).1 + MARGIN;
        assert_eq!(grid.width(), MARGIN + 2 * (100 + MARGIN));
        assert_eq!(grid.height(), header_h + 2 * (title_h + 80 + MARGIN));

        // Row 1, left cell: 200x100 scaled to 100x50, centred vertically in the 80 px cell.
        let cell_top = header_h + title_h;
        let left = MARGIN;
        assert_eq!(grid.get_pixel(left + 50, cell_top + 40).0, [255, 0, 0]);
        assert_eq!(grid.get_pixel(left + 50, cell_top + 5).0, LETTERBOX, "letterbox above a wide picture");
        assert_eq!(grid.get_pixel(left + 50, cell_top + 15).0, [255, 0, 0]);
        // Right cell: 50x100 scaled to 40x80, centred horizontally.
        let right = MARGIN + 100 + MARGIN;
        assert_eq!(grid.get_pixel(right + 50, cell_top + 40).0, [0, 0, 255]);
        assert_eq!(grid.get_pixel(right + 10, cell_top + 40).0, LETTERBOX);
        assert_eq!(grid.get_pixel(right + 30, cell_top + 40).0, [0, 0, 255]);
        // Second row has the same layout, one row height lower.
        let row2 = cell_top + title_h + 80 + MARGIN;
        assert_eq!(grid.get_pixel(left + 50, row2 + 40).0, [255, 0, 0]);
        assert_eq!(grid.get_pixel(right + 50, row2 + 40).0, [0, 0, 255]);
        // Headers are drawn in the header band, above the first row.
        let header_ink = (0..header_h)
            .flat_map(|y| (0..grid.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| grid.get_pixel(x, y).0 == TEXT)
            .count();
        assert!(header_ink > 100, "headers have {header_ink} ink pixels");
        let gt_header_ink = (0..header_h)
            .flat_map(|y| (left..left + 100).map(move |x| (x, y)))
            .filter(|&(x, y)| grid.get_pixel(x, y).0 == TEXT)
            .count();
        let expected: u32 = "Ground truth"
            .chars()
            .map(|c| crate::font::glyph_rows(c).iter().map(|r| r.count_ones()).sum::<u32>())
            .sum();
        assert_eq!(gt_header_ink as u32, expected);
    }

    #[test]
    fn small_pictures_are_not_enlarged_and_missing_titles_are_fine() {
        let tiny = RgbImage::from_pixel(10, 10, Rgb([0, 200, 0]));
        let grid = results_grid(&[(tiny.clone(), tiny)], &[] as &[&str], (64, 64));
        let green = grid.pixels().filter(|p| p.0 == [0, 200, 0]).count();
        assert_eq!(green, 2 * 100);
    }

    #[test]
    fn empty_inputs_give_a_header_only_image() {
        let grid = results_grid(&[], &[] as &[String], (0, 0));
        assert!(grid.width() > 0 && grid.height() > 0);
        let empty = RgbImage::new(0, 0);
        image_grid(&[vec![&empty]], &["a", "b", "c"], &["x"], (30, 30));
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        let cut = fit_text("a_very_long_file_name_indeed.jpg", 60, 1);
        assert!(text_size(&cut, 1).0 <= 60, "{cut}");
        assert!(cut.ends_with(".."));
        assert_eq!(fit_text("short", 60, 1), "short");
    }
}
