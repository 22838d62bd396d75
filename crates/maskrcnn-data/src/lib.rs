//! maskrcnn-data
