//! Sample types of raster bands and the typed, band-major samples of a window.

/// Native sample type of a raster band: maskrcnn-data's, so the pixel-scaling rule reads it as is.
pub use maskrcnn_data::scaling::SampleType;

/// Window samples in their native type, band-major (all of band 0, then band 1, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

macro_rules! samples_map {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Samples::U8($v) => $body,
            Samples::U16($v) => $body,
            Samples::U32($v) => $body,
            Samples::U64($v) => $body,
            Samples::I8($v) => $body,
            Samples::I16($v) => $body,
            Samples::I32($v) => $body,
            Samples::I64($v) => $body,
            Samples::F32($v) => $body,
            Samples::F64($v) => $body,
        }
    };
}

impl Samples {
    pub(super) fn zeros(t: SampleType, n: usize) -> Samples {
        match t {
            SampleType::U8 => Samples::U8(vec![0; n]),
            SampleType::U16 => Samples::U16(vec![0; n]),
            SampleType::U32 => Samples::U32(vec![0; n]),
            SampleType::U64 => Samples::U64(vec![0; n]),
            SampleType::I8 => Samples::I8(vec![0; n]),
            SampleType::I16 => Samples::I16(vec![0; n]),
            SampleType::I32 => Samples::I32(vec![0; n]),
            SampleType::I64 => Samples::I64(vec![0; n]),
            SampleType::F32 => Samples::F32(vec![0.0; n]),
            SampleType::F64 => Samples::F64(vec![0.0; n]),
        }
    }

    pub fn len(&self) -> usize {
        samples_map!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lossy for 32/64-bit integers beyond 2^24 and for f64; exact for u8/u16/i16/f32.
    #[allow(clippy::unnecessary_cast)] // the macro also expands for Vec<f32>
    pub fn to_f32(&self) -> Vec<f32> {
        samples_map!(self, v => v.iter().map(|&s| s as f32).collect())
    }
}
