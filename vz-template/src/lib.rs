//! Template caches: naming, lookup, unpacking and building.
