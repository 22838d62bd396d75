//! A small bitmap font drawn by hand for this crate (so no system fonts and no licence questions).
//!
//! Each glyph is 5 columns by 9 rows: rows 0..=6 are the body (cap height 7) and rows 7..=8 hold
//! descenders. Glyphs are placed in a 6x10 cell so neighbouring characters and lines never touch.
//! Text is scaled by integer factors only, which keeps the strokes crisp.

use image::{Rgb, RgbImage};

/// Glyph size in pixels at scale 1, without spacing.
pub const GLYPH_WIDTH: u32 = 5;
pub const GLYPH_HEIGHT: u32 = 9;
/// Horizontal advance per character at scale 1 (glyph plus one column of spacing).
pub const CELL_WIDTH: u32 = 6;
/// Line height at scale 1 (glyph plus one row of spacing).
pub const CELL_HEIGHT: u32 = 10;

const FIRST_CHAR: u8 = b' ';
const LAST_CHAR: u8 = b'~';
const GLYPH_COUNT: usize = (LAST_CHAR - FIRST_CHAR + 1) as usize;

/// Rows are separated by spaces; '#' is ink, '.' is paper; rows left out at the end are blank.
const GLYPH_ART: [(u8, &str); GLYPH_COUNT] = [
    (b' ', ""),
    (b'!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    (b'"', ".#.#. .#.#. .#.#."),
    (b'#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    (b'$', "..#.. .#### #.#.. .###. ..#.# ####. ..#.."),
    (b'%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    (b'&', ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#"),
    (b'\'', "..#.. ..#.. .#..."),
    (b'(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (b')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    (b'*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    (b'+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    (b',', "..... ..... ..... ..... ..... .##.. ..#.. .#..."),
    (b'-', "..... ..... ..... ##### ..... ..... ....."),
    (b'.', "..... ..... ..... ..... ..... .##.. .##.."),
    (b'/', "..... ....# ...#. ..#.. .#... #.... ....."),
    (b'0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    (b'1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    (b'3', "##### ...#. ..#.. ...#. ....# #...# .###."),
    (b'4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    (b'5', "##### #.... ####. ....# ....# #...# .###."),
    (b'6', "..##. .#... #.... ####. #...# #...# .###."),
    (b'7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    (b'8', ".###. #...# #...# .###. #...# #...# .###."),
    (b'9', ".###. #...# #...# .#### ....# ...#. .##.."),
    (b':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (b';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    (b'<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    (b'=', "..... ..... ##### ..... ##### ..... ....."),
    (b'>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    (b'?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
    (b'@', ".###. #...# ....# .##.# #.#.# #.#.# .###."),
    (b'A', ".###. #...# #...# ##### #...# #...# #...#"),
    (b'B', "####. #...# #...# ####. #...# #...# ####."),
    (b'C', ".###. #...# #.... #.... #.... #...# .###."),
    (b'D', "####. #...# #...# #...# #...# #...# ####."),
    (b'E', "##### #.... #.... ####. #.... #.... #####"),
    (b'F', "##### #.... #.... ####. #.... #.... #...."),
    (b'G', ".###. #...# #.... #.### #...# #...# .####"),
    (b'H', "#...# #...# #...# ##### #...# #...# #...#"),
    (b'I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    (b'K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    (b'L', "#.... #.... #.... #.... #.... #.... #####"),
    (b'M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    (b'N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    (b'O', ".###. #...# #...# #...# #...# #...# .###."),
    (b'P', "####. #...# #...# ####. #.... #.... #...."),
    (b'Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    (b'R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    (b'S', ".#### #.... #.... .###. ....# ....# ####."),
    (b'T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    (b'U', "#...# #...# #...# #...# #...# #...# .###."),
    (b'V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    (b'W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    (b'X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    (b'Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    (b'Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    (b'[', ".###. .#... .#... .#... .#... .#... .###."),
    (b'\\', "..... #.... .#... ..#.. ...#. ....# ....."),
    (b']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    (b'^', "..#.. .#.#. #...#"),
    (b'_', "..... ..... ..... ..... ..... ..... ..... #####"),
    (b'`', ".#... ..#.. ...#."),
    (b'a', "..... ..... .###. ....# .#### #...# .####"),
    (b'b', "#.... #.... #.##. ##..# #...# #...# ####."),
    (b'c', "..... ..... .###. #.... #.... #...# .###."),
    (b'd', "....# ....# .##.# #..## #...# #...# .####"),
    (b'e', "..... ..... .###. #...# ##### #.... .###."),
    (b'f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    (b'g', "..... ..... .#### #...# #...# #...# .#### ....# .###."),
    (b'h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    (b'i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    (b'j', "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##.."),
    (b'k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    (b'l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'm', "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#"),
    (b'n', "..... ..... #.##. ##..# #...# #...# #...#"),
    (b'o', "..... ..... .###. #...# #...# #...# .###."),
    (b'p', "..... ..... ####. #...# #...# #...# ####. #.... #...."),
    (b'q', "..... ..... .#### #...# #...# #...# .#### ....# ....#"),
    (b'r', "..... ..... #.##. ##..# #.... #.... #...."),
    (b's', "..... ..... .#### #.... .###. ....# ####."),
    (b't', ".#... .#... ###.. .#... .#... .#..# ..##."),
    (b'u', "..... ..... #...# #...# #...# #..## .##.#"),
    (b'v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    (b'w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    (b'x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    (b'y', "..... ..... #...# #...# #...# #...# .#### ....# .###."),
    (b'z', "..... ..... ##### ...#. ..#.. .#... #####"),
    (b'{', "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#."),
    (b'|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    (b'}', ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#..."),
    (b'~', "..... ..... .#... #.#.# ...#. ..... ....."),
];

/// One byte per row, bit 4 = leftmost column. Built at compile time, so a malformed glyph
/// (wrong order, wrong width, too many rows, stray character) is a build error, not a runtime surprise.
const GLYPHS: [[u8; GLYPH_HEIGHT as usize]; GLYPH_COUNT] = build_glyphs();

const fn build_glyphs() -> [[u8; GLYPH_HEIGHT as usize]; GLYPH_COUNT] {
    let mut table = [[0u8; GLYPH_HEIGHT as usize]; GLYPH_COUNT];
    let mut g = 0;
    while g < GLYPH_COUNT {
        let (code, art) = GLYPH_ART[g];
        assert!(code as usize == FIRST_CHAR as usize + g, "glyph table out of ASCII order");
        let bytes = art.as_bytes();
        let mut row = 0usize;
        let mut col = 0u32;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b' ' => {
                    assert!(col == GLYPH_WIDTH, "glyph row is not 5 columns wide");
                    row += 1;
                    col = 0;
                }
                b'#' | b'.' => {
                    assert!(col < GLYPH_WIDTH && row < GLYPH_HEIGHT as usize, "glyph too large");
                    if bytes[i] == b'#' {
                        table[g][row] |= 1 << (GLYPH_WIDTH - 1 - col);
                    }
                    col += 1;
                }
                _ => panic!("glyph art may only contain '#', '.' and ' '"),
            }
            i += 1;
        }
        assert!(col == 0 || col == GLYPH_WIDTH, "last glyph row is not 5 columns wide");
        g += 1;
    }
    table
}

/// Bitmap rows of `c`; characters outside printable ASCII render as '?', so any label still shows.
pub fn glyph_rows(c: char) -> &'static [u8; GLYPH_HEIGHT as usize] {
    let code = if (FIRST_CHAR as u32..=LAST_CHAR as u32).contains(&(c as u32)) { c as u8 } else { b'?' };
    &GLYPHS[(code - FIRST_CHAR) as usize]
}

/// Whether pixel (col,row) of the glyph for `c` is inked.
pub fn glyph_pixel(c: char, col: u32, row: u32) -> bool {
    col < GLYPH_WIDTH && row < GLYPH_HEIGHT && glyph_rows(c)[row as usize] & (1 << (GLYPH_WIDTH - 1 - col)) != 0
}

/// Pixel size (width, height) of one line of `text` at `scale`, without trailing spacing,
/// so a background box drawn from it hugs the text.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let scale = scale.max(1);
    let chars = text.chars().count() as u32;
    if chars == 0 {
        return (0, 0);
    }
    ((chars * CELL_WIDTH - 1) * scale, GLYPH_HEIGHT * scale)
}

/// Draw one line of text with its top-left corner at (x, y); pixels outside the image are clipped.
pub fn draw_text(image: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: [u8; 3]) {
    let scale = scale.max(1) as i64;
    let (width, height) = (image.width() as i64, image.height() as i64);
    for (index, c) in text.chars().enumerate() {
        let origin_x = x + index as i64 * CELL_WIDTH as i64 * scale;
        if origin_x >= width {
            break;
        }
        let rows = glyph_rows(c);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) == 0 {
                    continue;
                }
                let px0 = origin_x + col as i64 * scale;
                let py0 = y + row as i64 * scale;
                for py in py0.max(0)..(py0 + scale).min(height) {
                    for px in px0.max(0)..(px0 + scale).min(width) {
                        image.put_pixel(px as u32, py as u32, Rgb(color));
                    }
                }
            }
        }
    }
}

/// Text rotated 90 degrees counter-clockwise (reads bottom to top), for vertical axis labels.
/// (x, y) is the top-left of the rotated text's bounding box.
pub fn draw_text_vertical(image: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: [u8; 3]) {
    let (text_w, text_h) = text_size(text, scale);
    if text_w == 0 {
        return;
    }
    let mut horizontal = RgbImage::new(text_w, text_h);
    draw_text(&mut horizontal, 0, 0, text, scale, [255, 255, 255]);
    let (width, height) = (image.width() as i64, image.height() as i64);
    for (hx, hy, pixel) in horizontal.enumerate_pixels() {
        if pixel.0[0] == 0 {
            continue;
        }
        // Counter-clockwise rotation: the start of the text ends up at the bottom.
        let px = x + hy as i64;
        let py = y + (text_w as i64 - 1 - hx as i64);
        if (0..width).contains(&px) && (0..height).contains(&py) {
            image.put_pixel(px as u32, py as u32, Rgb(color));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printable_ascii_char_has_a_distinct_non_blank_glyph() {
        let mut seen = std::collections::HashSet::new();
        for code in b'!'..=b'~' {
            let rows = glyph_rows(code as char);
            assert!(rows.iter().any(|r| *r != 0), "glyph for {:?} is blank", code as char);
            assert!(seen.insert(*rows), "glyph for {:?} duplicates another", code as char);
        }
        assert!(glyph_rows(' ').iter().all(|r| *r == 0));
    }

    #[test]
    fn non_ascii_renders_as_question_mark() {
        assert_eq!(glyph_rows('é'), glyph_rows('?'));
    }

    #[test]
    fn letter_a_matches_its_art_at_scale_two() {
        let mut image = RgbImage::new(20, 30);
        draw_text(&mut image, 1, 2, "A", 2, [255, 0, 0]);
        // Top row of 'A' is ".###.": columns 1..=3 inked, each 2x2 pixels at scale 2.
        for (col, inked) in [false, true, true, true, false].iter().enumerate() {
            for dy in 0..2 {
                for dx in 0..2 {
                    let p = image.get_pixel(1 + col as u32 * 2 + dx, 2 + dy).0;
                    assert_eq!(p == [255, 0, 0], *inked, "col {col}");
                }
            }
        }
        // Row 3 of 'A' is "#####": a full 10 px bar.
        assert!((1..11).all(|x| image.get_pixel(x, 2 + 3 * 2).0 == [255, 0, 0]));
        let inked = image.pixels().filter(|p| p.0 != [0, 0, 0]).count();
        let art_pixels: u32 = glyph_rows('A').iter().map(|r| r.count_ones()).sum();
        assert_eq!(inked as u32, art_pixels * 4);
    }

    #[test]
    fn text_size_hugs_the_glyphs() {
        assert_eq!(text_size("", 3), (0, 0));
        assert_eq!(text_size("ab", 1), (11, 9));
        assert_eq!(text_size("ab", 2), (22, 18));
        let mut image = RgbImage::new(40, 20);
        draw_text(&mut image, 0, 0, "HW", 1, [9, 9, 9]);
        let max_x = image.enumerate_pixels().filter(|(_, _, p)| p.0 == [9, 9, 9]).map(|(x, _, _)| x).max();
        assert_eq!(max_x, Some(text_size("HW", 1).0 - 1));
    }

    #[test]
    fn drawing_off_the_image_is_clipped_not_a_panic() {
        let mut image = RgbImage::new(10, 10);
        draw_text(&mut image, -7, -4, "Clipped text", 3, [1, 2, 3]);
        draw_text_vertical(&mut image, 5, -50, "Vertical", 2, [1, 2, 3]);
        assert!(image.pixels().any(|p| p.0 == [1, 2, 3]));
    }

    #[test]
    fn vertical_text_reads_bottom_to_top() {
        let mut image = RgbImage::new(20, 40);
        draw_text_vertical(&mut image, 0, 0, "L-", 1, [255, 255, 255]);
        // 'L' has its vertical bar at column 0, which after CCW rotation is the bottom row of the box.
        let (w, _) = text_size("L-", 1);
        let bottom = w - 1;
        assert!((0..7).all(|x| image.get_pixel(x, bottom).0 == [255, 255, 255]));
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
