//! Typed views of the common match and target extensions.
