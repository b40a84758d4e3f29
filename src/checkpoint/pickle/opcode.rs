//! The pickle opcodes (protocols 0 to 5), decoded once from their byte, with the names Python's
//! `pickletools` gives them. The machine matches on [`Op`], never on raw bytes.

/// Declares [`Op`] from `Variant = byte, "NAME"` rows: the enum, the byte → opcode decoding and
/// the names come from one table.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $variant:ident = $byte:literal, $name:literal;)*) => {
        /// One pickle opcode.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op {
            $($(#[$doc])* $variant = $byte,)*
        }

        impl Op {
            /// The opcode of `byte`; `None` for a byte that is no opcode.
            pub fn decode(byte: u8) -> Option<Op> {
                match byte {
                    $($byte => Some(Op::$variant),)*
                    _ => None,
                }
            }

            /// Python's name of the opcode (`BINUNICODE`, `STACK_GLOBAL`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)*
                }
            }
        }
    };
}

opcodes! {
    // Protocols 0 and 1.
    Mark = b'(', "MARK";
    Stop = b'.', "STOP";
    Pop = b'0', "POP";
    PopMark = b'1', "POP_MARK";
    Dup = b'2', "DUP";
    Float = b'F', "FLOAT";
    Int = b'I', "INT";
    BinInt = b'J', "BININT";
    BinInt1 = b'K', "BININT1";
    Long = b'L', "LONG";
    BinInt2 = b'M', "BININT2";
    None = b'N', "NONE";
    PersId = b'P', "PERSID";
    BinPersId = b'Q', "BINPERSID";
    Reduce = b'R', "REDUCE";
    String = b'S', "STRING";
    BinString = b'T', "BINSTRING";
    ShortBinString = b'U', "SHORT_BINSTRING";
    Unicode = b'V', "UNICODE";
    BinUnicode = b'X', "BINUNICODE";
    Append = b'a', "APPEND";
    Build = b'b', "BUILD";
    Global = b'c', "GLOBAL";
    Dict = b'd', "DICT";
    EmptyDict = b'}', "EMPTY_DICT";
    Appends = b'e', "APPENDS";
    Get = b'g', "GET";
    BinGet = b'h', "BINGET";
    Inst = b'i', "INST";
    LongBinGet = b'j', "LONG_BINGET";
    List = b'l', "LIST";
    EmptyList = b']', "EMPTY_LIST";
    Obj = b'o', "OBJ";
    Put = b'p', "PUT";
    BinPut = b'q', "BINPUT";
    LongBinPut = b'r', "LONG_BINPUT";
    SetItem = b's', "SETITEM";
    Tuple = b't', "TUPLE";
    EmptyTuple = b')', "EMPTY_TUPLE";
    SetItems = b'u', "SETITEMS";
    BinFloat = b'G', "BINFLOAT";
    // Protocol 2.
    Proto = 0x80, "PROTO";
    NewObj = 0x81, "NEWOBJ";
    Ext1 = 0x82, "EXT1";
    Ext2 = 0x83, "EXT2";
    Ext4 = 0x84, "EXT4";
    Tuple1 = 0x85, "TUPLE1";
    Tuple2 = 0x86, "TUPLE2";
    Tuple3 = 0x87, "TUPLE3";
    NewTrue = 0x88, "NEWTRUE";
    NewFalse = 0x89, "NEWFALSE";
    Long1 = 0x8a, "LONG1";
    Long4 = 0x8b, "LONG4";
    // Protocol 3.
    BinBytes = b'B', "BINBYTES";
    ShortBinBytes = b'C', "SHORT_BINBYTES";
    // Protocol 4.
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE";
    BinUnicode8 = 0x8d, "BINUNICODE8";
    BinBytes8 = 0x8e, "BINBYTES8";
    EmptySet = 0x8f, "EMPTY_SET";
    AddItems = 0x90, "ADDITEMS";
    FrozenSet = 0x91, "FROZENSET";
    NewObjEx = 0x92, "NEWOBJ_EX";
    StackGlobal = 0x93, "STACK_GLOBAL";
    Memoize = 0x94, "MEMOIZE";
    Frame = 0x95, "FRAME";
    // Protocol 5.
    ByteArray8 = 0x96, "BYTEARRAY8";
    NextBuffer = 0x97, "NEXT_BUFFER";
    ReadonlyBuffer = 0x98, "READONLY_BUFFER";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table against Python's own (`pickletools.opcodes`, written by
    /// tests/fixtures/gen_pickle_opcodes.py): the same bytes, the same names, nothing else.
    #[test]
    fn opcodes_match_pickletools() {
        let reference = include_str!("../../../tests/fixtures/pickle_opcodes.txt");
        let mut known = [None; 256];
        for line in reference.lines().filter(|l| !l.starts_with('#')) {
            let (byte, name) = line.split_once(' ').unwrap();
            let byte = u8::from_str_radix(byte.trim_start_matches("0x"), 16).unwrap();
            known[byte as usize] = Some(name);
        }
        assert_eq!(known.iter().flatten().count(), 68);
        for byte in 0..=255u8 {
            let op = Op::decode(byte);
            assert_eq!(op.map(Op::name), known[byte as usize], "byte 0x{byte:02x}");
            if let Some(op) = op {
                assert_eq!(op as u8, byte, "{op:?}");
            }
        }
    }
}
