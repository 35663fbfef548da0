//! Two-level disk quota and the VE's private area.
