//! The opcode machine: reads opcodes and their arguments from the bytes, keeps the stack, the
//! marks and the memo, and asks the object model ([`super::object`]) to build or mutate values.
//! Every opcode adds at most one node or one id, so memory is bounded by a small multiple of the
//! pickle's length.

use std::collections::HashMap;

use super::object::{class_name, lookup_global, pairs, Arena, Fault, Global, Items, ObjId, Object};
use super::opcode::Op;
use super::{Pickle, PickleError};

/// The state of one run over a pickle's bytes.
pub(super) struct Machine<'a> {
    max_objects: usize,
    data: &'a [u8],
    pos: usize,
    /// Start of the opcode being run, for error messages.
    op_pos: usize,
    objs: Arena,
    stack: Vec<ObjId>,
    marks: Vec<usize>,
    memo: HashMap<u64, ObjId>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(data: &'a [u8], max_objects: usize) -> Self {
        Machine {
            max_objects,
            data,
            pos: 0,
            op_pos: 0,
            objs: Arena::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn malformed(&self, problem: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            pos: self.op_pos,
            problem: problem.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let remaining = self.data.len() - self.pos;
        // Lengths come from the file: check them against what is left before using them.
        if n > remaining as u64 {
            return Err(PickleError::Truncated(self.data.len()));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// A newline-terminated argument of the text opcodes (without the newline).
    fn line_bytes(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let l = self.line_bytes()?;
        std::str::from_utf8(l).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    fn string(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }

    /// An object model fault, placed at the opcode being run.
    fn fault(&self, f: Fault) -> PickleError {
        f.at(self.op_pos)
    }

    fn push(&mut self, o: Object) {
        let id = self.objs.add(o);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<ObjId, PickleError> {
        // Items below the innermost mark belong to an enclosing frame.
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err(self.malformed("pop across a mark"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<ObjId, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<ObjId>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no mark on the stack"))?;
        if m > self.stack.len() {
            return Err(self.malformed("mark above the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    /// The memo key of a PUT or GET opcode: a text line, one byte, four bytes, or (MEMOIZE) the
    /// next free key.
    fn memo_index(&mut self, op: Op) -> Result<u64, PickleError> {
        Ok(match op {
            Op::Put | Op::Get => {
                let line = self.line()?;
                line.parse::<u64>()
                    .map_err(|_| self.malformed(format!("bad {} index", op.name())))?
            }
            Op::BinPut | Op::BinGet => self.u8()? as u64,
            Op::LongBinPut | Op::LongBinGet => self.u32()? as u64,
            _ => self.memo.len() as u64,
        })
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(idx, top);
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&idx)
            .ok_or_else(|| self.malformed(format!("memo key {idx} is not set")))?;
        self.stack.push(id);
        Ok(())
    }

    /// REDUCE, NEWOBJ, INST, OBJ: "calls" `f` by building the node it would return.
    fn call(&mut self, f: ObjId, args: ObjId) -> Result<(), PickleError> {
        let o = self.objs.call(f, args, 0).map_err(|e| self.fault(e))?;
        self.stack.push(o);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = allowed(module, name)?;
        self.push(Object::Global(g));
        Ok(())
    }

    /// Runs opcodes until STOP and returns its value with the arena.
    pub(super) fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            // No opcode builds more than three nodes.
            if self.objs.len() > self.max_objects {
                return Err(PickleError::TooManyObjects(self.max_objects));
            }
            self.op_pos = self.pos;
            let byte = self.u8()?;
            let op = Op::decode(byte).ok_or(PickleError::UnknownOpcode {
                op: byte,
                pos: self.op_pos,
            })?;
            match op {
                Op::Proto => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.malformed(format!("unsupported pickle protocol {v}")));
                    }
                }
                Op::Frame => {
                    // Only a read-ahead hint.
                    self.u64()?;
                }
                Op::Stop => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        objs: self.objs.into_objects(),
                        root,
                    });
                }
                Op::Mark => self.marks.push(self.stack.len()),
                Op::Pop => {
                    // Like Python: POP on an empty frame drops the mark itself.
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                Op::PopMark => {
                    self.pop_mark()?;
                }
                Op::Dup => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                Op::None => self.push(Object::None),
                Op::NewTrue => self.push(Object::Bool(true)),
                Op::NewFalse => self.push(Object::Bool(false)),
                Op::Int => {
                    let l = self.line()?;
                    let o = match l {
                        "01" => Object::Bool(true),
                        "00" => Object::Bool(false),
                        _ => text_int(l).ok_or_else(|| self.malformed("bad INT argument"))?,
                    };
                    self.push(o);
                }
                Op::Long => {
                    let l = self.line()?;
                    let o = text_int(l.strip_suffix('L').unwrap_or(l))
                        .ok_or_else(|| self.malformed("bad LONG argument"))?;
                    self.push(o);
                }
                Op::BinInt => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Object::Int(v as i64));
                }
                Op::BinInt1 => {
                    let v = self.u8()?;
                    self.push(Object::Int(v as i64));
                }
                Op::BinInt2 => {
                    let v = self.u16()?;
                    self.push(Object::Int(v as i64));
                }
                Op::Long1 => {
                    let n = self.u8()?;
                    let b = self.take(n as u64)?;
                    let o = long_bytes(b);
                    self.push(o);
                }
                Op::Long4 => {
                    let n = i32::from_le_bytes(self.take_array()?);
                    if n < 0 {
                        return Err(self.malformed("negative LONG4 length"));
                    }
                    let b = self.take(n as u64)?;
                    let o = long_bytes(b);
                    self.push(o);
                }
                Op::BinFloat => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Object::Float(v));
                }
                Op::Float => {
                    let l = self.line()?;
                    let v = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.malformed("bad FLOAT argument"))?;
                    self.push(Object::Float(v));
                }
                Op::BinUnicode | Op::ShortBinUnicode | Op::BinUnicode8 => {
                    let n = match op {
                        Op::BinUnicode => self.u32()? as u64,
                        Op::ShortBinUnicode => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?;
                    let s = self.string(b)?;
                    self.push(Object::Str(s));
                }
                Op::Unicode => {
                    let l = self.line_bytes()?;
                    let s = raw_unicode_escape(l)
                        .ok_or_else(|| self.malformed("bad UNICODE argument"))?;
                    self.push(Object::Str(s));
                }
                Op::String => {
                    let l = self.line()?;
                    let unquoted = l
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| l.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| self.malformed("STRING argument is not quoted"))?
                        .to_string();
                    self.push(Object::Str(unquoted));
                }
                Op::BinString | Op::ShortBinString => {
                    let n = if op == Op::BinString {
                        let n = i32::from_le_bytes(self.take_array()?);
                        if n < 0 {
                            return Err(self.malformed("negative BINSTRING length"));
                        }
                        n as u64
                    } else {
                        self.u8()? as u64
                    };
                    let b = self.take(n)?;
                    let s = self.string(b)?;
                    self.push(Object::Str(s));
                }
                Op::BinBytes | Op::ShortBinBytes | Op::BinBytes8 | Op::ByteArray8 => {
                    let n = match op {
                        Op::BinBytes => self.u32()? as u64,
                        Op::ShortBinBytes => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Object::Bytes(b));
                }
                Op::EmptyTuple => self.push(Object::Tuple(Vec::new())),
                Op::Tuple => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items));
                }
                Op::Tuple1 | Op::Tuple2 | Op::Tuple3 => {
                    let n = match op {
                        Op::Tuple1 => 1,
                        Op::Tuple2 => 2,
                        _ => 3,
                    };
                    if self.stack.len() < n {
                        return Err(self.malformed("stack underflow"));
                    }
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Object::Tuple(items));
                }
                Op::EmptyList => self.push(Object::List(Vec::new())),
                Op::List => {
                    let items = self.pop_mark()?;
                    self.push(Object::List(items));
                }
                Op::Append => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.objs
                        .extend(list, Items::List(&[v]))
                        .map_err(|e| self.fault(e))?;
                }
                Op::Appends => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.objs
                        .extend(list, Items::List(&items))
                        .map_err(|e| self.fault(e))?;
                }
                Op::EmptyDict => self.push(Object::Dict(Vec::new())),
                Op::Dict => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items).map_err(|e| self.fault(e))?;
                    self.push(Object::Dict(pairs));
                }
                Op::SetItem => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.objs
                        .extend(d, Items::Dict(vec![(k, v)]))
                        .map_err(|e| self.fault(e))?;
                }
                Op::SetItems => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items).map_err(|e| self.fault(e))?;
                    let d = self.top()?;
                    self.objs
                        .extend(d, Items::Dict(pairs))
                        .map_err(|e| self.fault(e))?;
                }
                Op::EmptySet => self.push(Object::Set(Vec::new())),
                Op::AddItems => {
                    let items = self.pop_mark()?;
                    let s = self.top()?;
                    self.objs
                        .extend(s, Items::Set(items))
                        .map_err(|e| self.fault(e))?;
                }
                Op::FrozenSet => {
                    let items = self.pop_mark()?;
                    self.push(Object::Set(items));
                }
                Op::Put | Op::BinPut | Op::LongBinPut | Op::Memoize => {
                    let idx = self.memo_index(op)?;
                    self.memo_put(idx)?;
                }
                Op::Get | Op::BinGet | Op::LongBinGet => {
                    let idx = self.memo_index(op)?;
                    self.memo_get(idx)?;
                }
                Op::Global => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                Op::StackGlobal => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (
                        self.objs.str_of(module).map(str::to_string),
                        self.objs.str_of(name).map(str::to_string),
                    ) else {
                        return Err(self.malformed("STACK_GLOBAL arguments are not strings"));
                    };
                    self.global(&module, &name)?;
                }
                Op::Reduce | Op::NewObj | Op::NewObjEx => {
                    // REDUCE f(*args) / NEWOBJ cls.__new__(cls, *args): both only build nodes.
                    // NEWOBJ_EX's keyword arguments are not used by anything we allow.
                    if op == Op::NewObjEx {
                        self.pop()?;
                    }
                    let args = self.pop()?;
                    let f = self.pop()?;
                    self.call(f, args)?;
                }
                Op::Inst => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = allowed(module, name)?;
                    let items = self.pop_mark()?;
                    let f = self.objs.add(Object::Global(g));
                    let args = self.objs.add(Object::Tuple(items));
                    self.call(f, args)?;
                }
                Op::Obj => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.malformed("OBJ without a class"));
                    }
                    let f = items.remove(0);
                    let args = self.objs.add(Object::Tuple(items));
                    self.call(f, args)?;
                }
                Op::Build => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`): irrelevant to the
                    // tensors, and applying them would mean running __setstate__.
                    self.pop()?;
                    self.top()?;
                }
                Op::BinPersId => {
                    let pid = self.pop()?;
                    let o = self.objs.persistent_load(pid).map_err(|e| self.fault(e))?;
                    self.push(o);
                }
                Op::PersId => {
                    return Err(PickleError::Unsupported {
                        what: "PERSID (text persistent id)",
                        pos: self.op_pos,
                    })
                }
                Op::Ext1 | Op::Ext2 | Op::Ext4 => {
                    return Err(PickleError::Unsupported {
                        what: "extension registry (EXT1/EXT2/EXT4)",
                        pos: self.op_pos,
                    })
                }
                Op::NextBuffer | Op::ReadonlyBuffer => {
                    return Err(PickleError::Unsupported {
                        what: "out-of-band buffers",
                        pos: self.op_pos,
                    })
                }
            }
        }
    }
}

/// The allow-listed global `module.name`, or the refusal naming it.
fn allowed(module: &str, name: &str) -> Result<Global, PickleError> {
    lookup_global(module, name)
        .ok_or_else(|| PickleError::UnsupportedClass(class_name(module, name)))
}

/// Two's-complement little-endian integer of LONG1/LONG4.
fn long_bytes(b: &[u8]) -> Object {
    if b.is_empty() {
        return Object::Int(0);
    }
    if b.len() > 8 {
        return Object::BigInt;
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut a = [fill; 8];
    a[..b.len()].copy_from_slice(b);
    Object::Int(i64::from_le_bytes(a))
}

/// A decimal integer of the text opcodes; wider than 64 bits becomes [`Object::BigInt`].
fn text_int(s: &str) -> Option<Object> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<i64>().map_or(Object::BigInt, Object::Int))
}

/// Decodes Python's raw-unicode-escape (protocol 0 UNICODE): bytes are Latin-1 characters
/// except `\\uXXXX` and `\\UXXXXXXXX` escapes.
fn raw_unicode_escape(b: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            (c, _) => {
                out.push(c as char);
                i += 1;
                continue;
            }
        };
        let hex = b.get(i + 2..i + 2 + digits)?;
        let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        out.push(char::from_u32(code)?);
        i += 2 + digits;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_unicode_escape_decoding() {
        assert_eq!(
            raw_unicode_escape(b"h\xe9llo").as_deref(),
            Some("h\u{e9}llo")
        );
        assert_eq!(
            raw_unicode_escape(b"a\\u005cb\\u000a\\U0001f600").as_deref(),
            Some("a\\b\n\u{1f600}")
        );
        assert_eq!(raw_unicode_escape(b"\\u12"), None);
        assert_eq!(raw_unicode_escape(b"\\ud800"), None);
        assert_eq!(raw_unicode_escape(b"x\\y").as_deref(), Some("x\\y"));
    }
}
