//! The GeoKeyDirectory (GeoTIFF 1.1, OGC 19-008): key ids and a parsed directory whose values
//! are looked up by key, whichever of the three storage tags holds them.

use std::collections::HashMap;

use anyhow::{bail, Result};

pub(super) const TAG_GEO_KEY_DIRECTORY: u16 = 34735;
pub(super) const TAG_GEO_DOUBLE_PARAMS: u16 = 34736;
pub(super) const TAG_GEO_ASCII_PARAMS: u16 = 34737;

pub(super) const USER_DEFINED: u16 = 32767;

pub(super) const GT_MODEL_TYPE: u16 = 1024;
pub(super) const GT_RASTER_TYPE: u16 = 1025;
pub(super) const GT_CITATION: u16 = 1026;
pub(super) const GEOGRAPHIC_TYPE: u16 = 2048;
pub(super) const GEOG_CITATION: u16 = 2049;
pub(super) const GEOG_GEODETIC_DATUM: u16 = 2050;
pub(super) const GEOG_PRIME_MERIDIAN: u16 = 2051;
pub(super) const GEOG_ANGULAR_UNITS: u16 = 2054;
pub(super) const GEOG_ANGULAR_UNIT_SIZE: u16 = 2055;
pub(super) const GEOG_ELLIPSOID: u16 = 2056;
pub(super) const GEOG_SEMI_MAJOR_AXIS: u16 = 2057;
pub(super) const GEOG_SEMI_MINOR_AXIS: u16 = 2058;
pub(super) const GEOG_INV_FLATTENING: u16 = 2059;
pub(super) const GEOG_PRIME_MERIDIAN_LONG: u16 = 2061;
/// GDAL/libgeotiff extension: datum shift to WGS 84 (3 or 7 values).
pub(super) const GEOG_TOWGS84: u16 = 2062;
pub(super) const PROJECTED_CS_TYPE: u16 = 3072;
pub(super) const PCS_CITATION: u16 = 3073;
pub(super) const PROJECTION: u16 = 3074;
pub(super) const PROJ_COORD_TRANS: u16 = 3075;
pub(super) const PROJ_LINEAR_UNITS: u16 = 3076;
pub(super) const PROJ_LINEAR_UNIT_SIZE: u16 = 3077;
pub(super) const PROJ_STD_PARALLEL1: u16 = 3078;
pub(super) const PROJ_STD_PARALLEL2: u16 = 3079;
pub(super) const PROJ_NAT_ORIGIN_LONG: u16 = 3080;
pub(super) const PROJ_NAT_ORIGIN_LAT: u16 = 3081;
pub(super) const PROJ_FALSE_EASTING: u16 = 3082;
pub(super) const PROJ_FALSE_NORTHING: u16 = 3083;
pub(super) const PROJ_FALSE_ORIGIN_LONG: u16 = 3084;
pub(super) const PROJ_FALSE_ORIGIN_LAT: u16 = 3085;
pub(super) const PROJ_FALSE_ORIGIN_EASTING: u16 = 3086;
pub(super) const PROJ_FALSE_ORIGIN_NORTHING: u16 = 3087;
pub(super) const PROJ_CENTER_LONG: u16 = 3088;
pub(super) const PROJ_CENTER_LAT: u16 = 3089;
pub(super) const PROJ_CENTER_EASTING: u16 = 3090;
pub(super) const PROJ_CENTER_NORTHING: u16 = 3091;
pub(super) const PROJ_SCALE_AT_NAT_ORIGIN: u16 = 3092;
pub(super) const PROJ_SCALE_AT_CENTER: u16 = 3093;
pub(super) const PROJ_AZIMUTH_ANGLE: u16 = 3094;
pub(super) const PROJ_STRAIGHT_VERT_POLE_LONG: u16 = 3095;
pub(super) const PROJ_RECTIFIED_GRID_ANGLE: u16 = 3096;

pub(super) const RASTER_PIXEL_IS_POINT: u16 = 2;

/// The keys of one GeoKeyDirectory, by storage type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoKeys {
    shorts: HashMap<u16, u16>,
    doubles: HashMap<u16, Vec<f64>>,
    strings: HashMap<u16, String>,
}

impl GeoKeys {
    /// Parses the directory (`34735`) against its double (`34736`) and ASCII (`34737`) params.
    pub fn parse(dir: &[u16], doubles: &[f64], ascii: &str) -> Result<GeoKeys> {
        if dir.len() < 4 {
            bail!("GeoKeyDirectory has {} values, expected at least 4", dir.len());
        }
        let n = dir[3] as usize;
        let mut keys = GeoKeys::default();
        for k in 0..n {
            let Some(e) = dir.get(4 + 4 * k..8 + 4 * k) else { bail!("GeoKeyDirectory is shorter than its {n} keys") };
            let (key, loc, count, value) = (e[0], e[1], e[2] as usize, e[3] as usize);
            match loc {
                0 => {
                    keys.shorts.insert(key, e[3]);
                }
                TAG_GEO_KEY_DIRECTORY => {
                    if let Some(&v) = dir.get(value) {
                        keys.shorts.insert(key, v);
                    }
                }
                TAG_GEO_DOUBLE_PARAMS => {
                    let Some(v) = doubles.get(value..value + count) else {
                        bail!("GeoKey {key} points past the end of GeoDoubleParams ({} values)", doubles.len())
                    };
                    keys.doubles.insert(key, v.to_vec());
                }
                TAG_GEO_ASCII_PARAMS => {
                    let s: String = ascii.chars().skip(value).take(count).collect();
                    keys.strings.insert(key, s.trim_end_matches(['|', '\0']).to_string());
                }
                // Keys stored in other tags are not part of GeoTIFF 1.1; ignore rather than refuse.
                _ => {}
            }
        }
        Ok(keys)
    }

    pub fn short(&self, key: u16) -> Option<u16> {
        self.shorts.get(&key).copied()
    }

    /// A coded value that names an EPSG object (neither 0 "undefined" nor 32767 "user-defined").
    pub fn code(&self, key: u16) -> Option<u16> {
        self.short(key).filter(|&c| c != 0 && c != USER_DEFINED)
    }

    pub fn double(&self, key: u16) -> Option<f64> {
        self.doubles.get(&key).and_then(|v| v.first().copied())
    }

    pub fn doubles(&self, key: u16) -> Option<&[f64]> {
        self.doubles.get(&key).map(|v| v.as_slice())
    }

    pub fn string(&self, key: u16) -> Option<&str> {
        self.strings.get(&key).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }

    /// The first of `keys` that is present, for parameters different writers store under
    /// different keys (libgeotiff's fallbacks).
    pub fn first_double(&self, keys: &[u16]) -> Option<f64> {
        keys.iter().find_map(|&k| self.double(k))
    }

    #[cfg(test)]
    pub fn with_short(mut self, key: u16, v: u16) -> GeoKeys {
        self.shorts.insert(key, v);
        self
    }

    #[cfg(test)]
    pub fn with_double(mut self, key: u16, v: f64) -> GeoKeys {
        self.doubles.insert(key, vec![v]);
        self
    }

    #[cfg(test)]
    pub fn with_doubles(mut self, key: u16, v: &[f64]) -> GeoKeys {
        self.doubles.insert(key, v.to_vec());
        self
    }

    #[cfg(test)]
    pub fn with_string(mut self, key: u16, v: &str) -> GeoKeys {
        self.strings.insert(key, v.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_their_storage_tags() {
        let dir = [1, 1, 0, 3, GT_MODEL_TYPE, 0, 1, 1, GT_CITATION, 34737, 5, 0, PROJ_FALSE_EASTING, 34736, 1, 1];
        let keys = GeoKeys::parse(&dir, &[1.5, 500000.0], "hello|").unwrap();
        assert_eq!(keys.short(GT_MODEL_TYPE), Some(1));
        assert_eq!(keys.string(GT_CITATION), Some("hello"));
        assert_eq!(keys.double(PROJ_FALSE_EASTING), Some(500000.0));
        let short = [1, 1, 0, 2, GT_MODEL_TYPE, 0, 1, 1];
        assert!(GeoKeys::parse(&short, &[], "").unwrap_err().to_string().contains("shorter"));
        let past = [1, 1, 0, 1, PROJ_FALSE_EASTING, 34736, 1, 9];
        assert!(GeoKeys::parse(&past, &[1.0], "").unwrap_err().to_string().contains("GeoDoubleParams"));
    }
}
