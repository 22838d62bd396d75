//! Shape bookkeeping shared by the weight and input gradients.

use burn::tensor::ops::ConvOptions;

/// Upper bound on elements of one im2col/col2im tile. Tiles are whole output rows, so memory stays
/// bounded for large images (ResNet's 7x7 stem at 1024² would otherwise need a 600 MB column
/// buffer) while each GEMM still gets a reduction/column dimension of thousands.
const COLUMN_TILE_ELEMENTS: usize = 1 << 21;

/// Geometry of one conv2d, resolved from the tensor shapes and options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv2dGeometry {
    pub batch: usize,
    pub channels_in: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels_out: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: [usize; 2],
    pub padding_begin: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2dGeometry {
    /// Validates the shapes against each other; panics with the offending shapes on a mismatch,
    /// like burn's own ops do.
    pub fn new(x_shape: &[usize], weight_shape: &[usize], grad_shape: &[usize], options: &ConvOptions<2>) -> Self {
        assert_eq!(x_shape.len(), 4, "conv2d backward: input must be rank 4");
        assert_eq!(weight_shape.len(), 4, "conv2d backward: weight must be rank 4");
        assert_eq!(grad_shape.len(), 4, "conv2d backward: output grad must be rank 4");
        let groups = options.groups;
        assert!(groups >= 1, "conv2d backward: groups must be >= 1");
        let geometry = Self {
            batch: x_shape[0],
            channels_in: x_shape[1],
            in_h: x_shape[2],
            in_w: x_shape[3],
            channels_out: weight_shape[0],
            out_h: grad_shape[2],
            out_w: grad_shape[3],
            kernel_h: weight_shape[2],
            kernel_w: weight_shape[3],
            stride: options.stride,
            padding_begin: options.padding_begin(),
            dilation: options.dilation,
            groups,
        };
        assert_eq!(
            weight_shape[1] * groups,
            geometry.channels_in,
            "conv2d backward: weight {weight_shape:?} and groups {groups} do not match input channels {}",
            geometry.channels_in
        );
        assert_eq!(geometry.channels_out % groups, 0, "conv2d backward: output channels not divisible by groups");
        assert_eq!(
            (grad_shape[0], grad_shape[1]),
            (geometry.batch, geometry.channels_out),
            "conv2d backward: output grad {grad_shape:?} does not match batch/out channels"
        );
        geometry
    }

    pub fn in_per_group(&self) -> usize {
        self.channels_in / self.groups
    }

    pub fn out_per_group(&self) -> usize {
        self.channels_out / self.groups
    }

    pub fn kernel_taps(&self) -> usize {
        self.kernel_h * self.kernel_w
    }

    /// Rows of the per-group column matrix: one per (input channel, kh, kw).
    pub fn column_rows(&self) -> usize {
        self.in_per_group() * self.kernel_taps()
    }

    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// A pointwise conv reads the input exactly at the output positions, so the input plane *is*
    /// the column matrix and im2col/col2im can be skipped.
    pub fn is_pointwise_identity(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride == [1, 1]
            && self.padding_begin == [0, 0]
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    /// Output rows per column tile.
    pub fn tile_rows(&self) -> usize {
        let per_row = (self.column_rows() * self.out_w).max(1);
        (COLUMN_TILE_ELEMENTS / per_row).clamp(1, self.out_h.max(1))
    }

    /// Half-open range of output columns `ow` whose tap `kw` lands inside the input.
    pub fn valid_out_cols(&self, kw: usize) -> (usize, usize) {
        valid_range(kw * self.dilation[1], self.padding_begin[1], self.stride[1], self.in_w, self.out_w)
    }

    /// Input column read by output column `ow_start` through tap `kw`; only meaningful when
    /// `ow_start` is the start of [`Self::valid_out_cols`] and that range is not empty.
    pub fn first_input_col(&self, ow_start: usize, kw: usize) -> usize {
        (ow_start * self.stride[1] + kw * self.dilation[1]).wrapping_sub(self.padding_begin[1])
    }

    /// Input row read by output row `oh` through tap `kh`, if inside the input.
    pub fn input_row(&self, oh: usize, kh: usize) -> Option<usize> {
        let ih = (oh * self.stride[0] + kh * self.dilation[0]) as isize - self.padding_begin[0] as isize;
        (ih >= 0 && (ih as usize) < self.in_h).then_some(ih as usize)
    }
}

/// Half-open range of output positions `o` for which `o * stride + offset - pad` lies inside
/// `[0, in_size)`, clipped to `[0, out_size)`.
///
/// Asymmetric padding needs nothing more: only the begin padding fixes where a tap lands, and the
/// output shape already reflects the end padding, so taps past the input edge are simply skipped.
#[inline]
fn valid_range(offset: usize, pad: usize, stride: usize, in_size: usize, out_size: usize) -> (usize, usize) {
    let start = if offset >= pad { 0 } else { (pad - offset).div_ceil(stride) };
    let limit = in_size + pad;
    let end = if offset >= limit { 0 } else { (limit - offset).div_ceil(stride) };
    let end = end.min(out_size);
    (start.min(end), end)
}
