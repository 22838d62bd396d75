//! maskrcnn-geo
