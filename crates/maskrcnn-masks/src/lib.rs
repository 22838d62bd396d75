//! maskrcnn-masks
