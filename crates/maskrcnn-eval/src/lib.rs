//! maskrcnn-eval
