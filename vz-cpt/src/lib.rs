//! Checkpoint and restore of VEs through CRIU.
