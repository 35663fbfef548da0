//! The one ELF fact the busybox builder needs: is a binary statically linked (no `PT_INTERP`
//! program header, so it runs in a root tree without a dynamic loader or libraries)?

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

/// Why an executable cannot be copied alone into a root tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStatic {
    /// Not an ELF file at all.
    NotElf,
    /// An ELF file whose headers are cut short or inconsistent.
    Truncated,
    /// Has a `PT_INTERP` header: needs a dynamic loader and shared libraries.
    Dynamic,
}

impl NotStatic {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NotStatic::NotElf => "not an ELF executable",
            NotStatic::Truncated => "truncated or malformed ELF headers",
            NotStatic::Dynamic => "dynamically linked: it has an ELF interpreter (PT_INTERP)",
        }
    }
}

/// Checks that `image` (the whole file) is an ELF executable without `PT_INTERP`.
pub(crate) fn check_static(image: &[u8]) -> Result<(), NotStatic> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(NotStatic::NotElf);
    }
    let is64 = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(NotStatic::NotElf),
    };
    let big = match image.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(NotStatic::NotElf),
    };
    let read = |at: usize, len: usize| -> Result<u64, NotStatic> {
        let bytes = image.get(at..at + len).ok_or(NotStatic::Truncated)?;
        let mut v = 0u64;
        for i in 0..len {
            let b = if big { bytes[i] } else { bytes[len - 1 - i] };
            v = (v << 8) | u64::from(b);
        }
        Ok(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (read(32, 8)?, read(54, 2)?, read(56, 2)?)
    } else {
        (read(28, 4)?, read(42, 2)?, read(44, 2)?)
    };
    if phnum == 0 || phentsize < 4 {
        return Err(NotStatic::Truncated);
    }
    let phoff = usize::try_from(phoff).map_err(|_| NotStatic::Truncated)?;
    let phentsize = usize::try_from(phentsize).map_err(|_| NotStatic::Truncated)?;
    for i in 0..usize::try_from(phnum).map_err(|_| NotStatic::Truncated)? {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(NotStatic::Truncated)?;
        if read(at, 4)? == u64::from(PT_INTERP) {
            return Err(NotStatic::Dynamic);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF image with the given program header types.
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut image = vec![0u8; 64 + 56 * types.len()];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2;
        image[5] = 1;
        image[32..40].copy_from_slice(&64u64.to_le_bytes());
        image[54..56].copy_from_slice(&56u16.to_le_bytes());
        image[56..58].copy_from_slice(&u16::try_from(types.len()).unwrap().to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            image[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        image
    }

    /// The same for 32-bit big-endian.
    fn elf32be(types: &[u32]) -> Vec<u8> {
        let mut image = vec![0u8; 52 + 32 * types.len()];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 1;
        image[5] = 2;
        image[28..32].copy_from_slice(&52u32.to_be_bytes());
        image[42..44].copy_from_slice(&32u16.to_be_bytes());
        image[44..46].copy_from_slice(&u16::try_from(types.len()).unwrap().to_be_bytes());
        for (i, t) in types.iter().enumerate() {
            image[52 + 32 * i..56 + 32 * i].copy_from_slice(&t.to_be_bytes());
        }
        image
    }

    #[test]
    fn static_and_dynamic_images_are_told_apart() {
        assert_eq!(check_static(&elf64(&[6, 1, 1])), Ok(()));
        assert_eq!(check_static(&elf64(&[6, 3, 1, 2])), Err(NotStatic::Dynamic));
        assert_eq!(check_static(&elf32be(&[1, 2])), Ok(()));
        assert_eq!(check_static(&elf32be(&[3])), Err(NotStatic::Dynamic));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(check_static(b"#!/bin/sh\n"), Err(NotStatic::NotElf));
        assert_eq!(check_static(b""), Err(NotStatic::NotElf));
        let mut cut = elf64(&[1, 3]);
        cut.truncate(64 + 56);
        assert_eq!(check_static(&cut), Err(NotStatic::Truncated));
    }

    #[test]
    fn host_binaries() {
        // The test binary itself is a dynamically linked Rust executable (glibc target).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(check_static(&me), Err(NotStatic::Dynamic));
    }
}
