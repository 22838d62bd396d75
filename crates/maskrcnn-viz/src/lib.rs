//! maskrcnn-viz
