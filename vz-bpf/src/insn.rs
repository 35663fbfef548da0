//! eBPF instructions (`struct bpf_insn`) and the builders vz's program compilers use.

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// The opcode (class, size or operation, source).
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    /// The offset (jumps: instructions to skip; memory: bytes).
    pub off: i16,
    /// The immediate.
    pub imm: i32,
}

/// `BPF_JMP | BPF_JEQ | BPF_K`: `if dst == imm goto +off`.
pub const JEQ_IMM: u8 = 0x15;
/// `BPF_JMP | BPF_JNE | BPF_K`: `if dst != imm goto +off`.
pub const JNE_IMM: u8 = 0x55;
/// `BPF_JMP | BPF_EXIT`.
pub const EXIT: u8 = 0x95;

/// An instruction from its fields.
pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

/// `dst = imm` (64-bit).
pub fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}

/// `dst = src` (64-bit).
pub fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}

/// `dst = *(u32 *)(src + off)`.
pub fn load_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}

/// `if dst != imm goto +off`; the offset is 0 until the caller patches it.
pub fn jne_imm(dst: u8, imm: i32) -> Insn {
    insn(JNE_IMM, dst, 0, 0, imm)
}

/// `dst = r10 + off`: a pointer into the stack.
pub fn stack_ptr(dst: u8, off: i32) -> [Insn; 2] {
    [mov_reg(dst, 10), insn(0x07, dst, 0, 0, off)]
}

/// `dst = map`: the 16-byte load of a map's fd, which the kernel turns into the map.
pub fn load_map(dst: u8, fd: i32) -> [Insn; 2] {
    [insn(0x18, dst, 1, 0, fd), insn(0, 0, 0, 0, 0)]
}

/// A call of the kernel's helper number `helper`.
pub fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}

/// `return r0`.
pub fn exit() -> Insn {
    insn(EXIT, 0, 0, 0, 0)
}

/// A forward jump over `len` instructions, as an offset.
pub fn jump_off(len: usize) -> i16 {
    i16::try_from(len).unwrap_or(i16::MAX)
}

/// Whether every conditional jump of `prog` lands inside it (a check for compilers' tests;
/// the kernel's verifier is the real one).
pub fn jumps_stay_inside(prog: &[Insn]) -> bool {
    prog.iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.code, JEQ_IMM | JNE_IMM))
        .all(|(at, i)| usize::try_from(i.off).is_ok_and(|off| at + 1 + off < prog.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_share_a_byte_source_high() {
        let i = insn(0xbf, 3, 10, 0, 0);
        assert_eq!(i.regs, 0xa3);
        assert_eq!(mov_reg(3, 10), i);
        assert_eq!(std::mem::size_of::<Insn>(), 8, "struct bpf_insn");
    }

    #[test]
    fn jumps_outside_are_found() {
        let mut prog = vec![jne_imm(1, 0), mov_imm(0, 1), exit()];
        prog[0].off = 1;
        assert!(jumps_stay_inside(&prog));
        prog[0].off = 2;
        assert!(!jumps_stay_inside(&prog));
    }
}
