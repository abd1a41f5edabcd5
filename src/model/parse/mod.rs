//! Log parsers, one module per log format. Pure: bytes in, events out.
