//! Class colours for Esri metadata (`Color` of each class in an `.emd`), in one place so chip
//! exports and exported models show a class in the same colour.

/// Colours cycle after this many classes.
const PALETTE: [[u8; 3]; 10] = [
    [255, 0, 0],
    [0, 170, 255],
    [255, 200, 0],
    [0, 200, 80],
    [200, 0, 255],
    [255, 120, 0],
    [0, 255, 220],
    [150, 90, 40],
    [255, 0, 150],
    [120, 120, 255],
];

/// RGB colour of the class at 0-based position `index` in a class list (not its class value),
/// repeating every ten classes.
pub fn class_colour(index: usize) -> [u8; 3] {
    PALETTE[index % PALETTE.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_distinct_and_cycle() {
        for a in 0..PALETTE.len() {
            for b in a + 1..PALETTE.len() {
                assert_ne!(class_colour(a), class_colour(b), "classes {a} and {b}");
            }
        }
        assert_eq!(class_colour(0), [255, 0, 0]);
        assert_eq!(class_colour(13), class_colour(3));
    }
}
