//! Isolation for VEs: namespaces, rootfs and mounts, devices, capabilities, the VE's init, entering a running VE, VE networking.
