//! Truncated JPEGs: decoders fill the missing part with grey and report success, so the file's
//! structure is checked up to its end-of-image marker before decoding.

/// Walks a JPEG's segments (by their lengths, so an embedded thumbnail's markers are skipped) and
/// entropy-coded scans up to the end-of-image marker; data ending first is a truncated file.
/// Bytes after the end-of-image marker (appended metadata, motion photos) are allowed.
pub fn jpeg_truncation(bytes: &[u8]) -> Option<&'static str> {
    const TRUNCATED: &str = "truncated JPEG (the data ends before the end-of-image marker)";
    if bytes.len() < 2 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return None;
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF (and any fill 0xFFs), then its code; stray bytes are skipped as
        // decoders do.
        while i < bytes.len() && bytes[i] != 0xFF {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return Some(TRUNCATED) };
        i += 1;
        match marker {
            0xD9 => return None,
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        if i + 2 > bytes.len() {
            return Some(TRUNCATED);
        }
        let length = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
        if length < 2 {
            return None;
        }
        i += length;
        if i > bytes.len() {
            return Some(TRUNCATED);
        }
        if marker == 0xDA {
            // Entropy-coded data: runs to the next marker other than a stuffed 0xFF00 or a restart.
            loop {
                if i + 1 >= bytes.len() {
                    return Some(TRUNCATED);
                }
                if bytes[i] == 0xFF {
                    match bytes[i + 1] {
                        0x00 | 0xD0..=0xD7 => i += 2,
                        0xFF => i += 1,
                        _ => break,
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::jpeg_truncation;

    #[test]
    fn a_jpeg_cut_anywhere_is_truncated_and_a_whole_one_is_not() {
        let picture = image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, 90]));
        let mut bytes = Vec::new();
        picture.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
        assert_eq!(jpeg_truncation(&bytes), None);
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"appended metadata");
        assert_eq!(jpeg_truncation(&trailing), None);
        for cut in [3, 20, bytes.len() / 3, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
            assert!(jpeg_truncation(&bytes[..cut]).is_some(), "cut at {cut} of {}", bytes.len());
        }
        assert_eq!(jpeg_truncation(b"\x89PNG"), None, "not a JPEG: left to the decoder");
    }
}
