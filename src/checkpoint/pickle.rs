//! A pickle reader for `torch.save` checkpoints that never executes code.
//!
//! Python's unpickler calls whatever callable the file names; that is how a checkpoint can run
//! `os.system`. This machine instead builds an inert value tree: the few globals a state dict
//! needs (OrderedDict, the torch tensor rebuild functions, storage types, dtypes) are looked up in
//! an allow-list and "called" by building a node; any other global is refused with its name.
//!
//! Objects live in an arena ([`Pickle::get`]) and the stack, the memo and containers hold ids, so
//! a memoised object mutated later (a dict filled by SETITEMS after BINPUT) stays one object, and
//! a hostile file cannot blow up memory by fetching a big container many times: every opcode adds
//! at most one node or one id, so memory is bounded by a small multiple of the pickle's length.

use std::collections::HashMap;

use super::DType;

/// Index of an object in [`Pickle`]'s arena.
pub type ObjId = usize;

/// A value built by the pickle machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits: plain data whose value a checkpoint reader never needs.
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<ObjId>),
    List(Vec<ObjId>),
    /// Items in insertion order (duplicates are kept; the caller decides).
    Dict(Vec<(ObjId, ObjId)>),
    Set(Vec<ObjId>),
    /// A reference to an allow-listed class or function (not called).
    Global(Global),
    /// `numpy.dtype(code)` (e.g. `"f8"`), the type of a numpy scalar.
    NumpyDType(String),
    /// A storage named by a persistent id: its bytes are entry `data/{key}` of the archive.
    /// (Boxed, like the tensor, to keep every node small: a pickle can make one per byte.)
    Storage(Box<StorageRef>),
    Tensor(Box<TensorRef>),
}

impl Object {
    /// A short name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) | Object::BigInt => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Set(_) => "set",
            Object::Global(_) => "class or function",
            Object::NumpyDType(_) => "numpy dtype",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// A storage referenced by a persistent id `('storage', storage_type, key, location, numel)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: DType,
    /// Number of elements the pickle claims; the archive entry's size is what gets checked.
    pub numel: u64,
    pub location: String,
}

/// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`: a view into a storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// In elements.
    pub storage_offset: u64,
    pub shape: Vec<usize>,
    /// In elements.
    pub strides: Vec<usize>,
}

/// The allow-listed globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    Set,
    FrozenSet,
    /// `_codecs.encode(str, 'latin1')`: how protocol 2 pickles `bytes`.
    CodecsEncode,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    /// `torch.HalfStorage` & co; `None` for storage types whose dtype we do not read (complex...).
    StorageType(Option<DType>, &'static str),
    /// `torch.float16` & co: only ever used as plain data.
    TorchDType,
    TorchSize,
    TorchDevice,
    /// `torch.Tensor` / `torch.nn.Parameter` as passed to `_rebuild_from_type_v2`.
    TensorClass,
    /// `numpy.dtype` and `numpy.core.multiarray.scalar`: numpy scalars (a loss, a learning rate)
    /// that training scripts store beside the weights.
    NumpyDType,
    NumpyScalar,
}

const STORAGE_TYPES: &[(&str, Option<DType>)] = &[
    ("HalfStorage", Some(DType::F16)),
    ("BFloat16Storage", Some(DType::BF16)),
    ("FloatStorage", Some(DType::F32)),
    ("DoubleStorage", Some(DType::F64)),
    ("BoolStorage", Some(DType::Bool)),
    ("ByteStorage", Some(DType::U8)),
    ("CharStorage", Some(DType::I8)),
    ("ShortStorage", Some(DType::I16)),
    ("IntStorage", Some(DType::I32)),
    ("LongStorage", Some(DType::I64)),
    // An untyped storage is read as raw bytes.
    ("UntypedStorage", Some(DType::U8)),
    ("ComplexFloatStorage", None),
    ("ComplexDoubleStorage", None),
    ("QInt8Storage", None),
    ("QUInt8Storage", None),
    ("QInt32Storage", None),
];

const TORCH_DTYPES: &[&str] = &[
    "float16",
    "half",
    "bfloat16",
    "float32",
    "float",
    "float64",
    "double",
    "bool",
    "uint8",
    "int8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "complex64",
    "complex128",
];

/// Looks a `module.name` up in the allow-list.
pub fn lookup_global(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("builtins" | "__builtin__", "set") => Global::Set,
        ("builtins" | "__builtin__", "frozenset") => Global::FrozenSet,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("numpy", "dtype") => Global::NumpyDType,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::NumpyScalar,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor" | "torch._utils", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Size") => Global::TorchSize,
        ("torch", "device") => Global::TorchDevice,
        ("torch" | "torch._tensor", "Tensor")
        | ("torch.nn.parameter" | "torch.nn", "Parameter") => Global::TensorClass,
        ("torch" | "torch.storage", _) => {
            if let Some(&(n, d)) = STORAGE_TYPES.iter().find(|(n, _)| *n == name) {
                Global::StorageType(d, n)
            } else if module == "torch" && TORCH_DTYPES.contains(&name) {
                Global::TorchDType
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    #[error("refuses to load class {0} (not a tensor or plain data)")]
    UnsupportedClass(String),
    #[error("tensors of type torch.{0} are not supported")]
    UnsupportedStorage(&'static str),
    #[error("pickle builds more than {0} objects: not a checkpoint")]
    TooManyObjects(usize),
    #[error("pickle ends early at byte {0}")]
    Truncated(usize),
    #[error("unknown pickle opcode 0x{op:02x} at byte {pos}")]
    UnknownOpcode { op: u8, pos: usize },
    #[error("unsupported pickle feature {what} at byte {pos}")]
    Unsupported { what: &'static str, pos: usize },
    #[error("malformed pickle at byte {pos}: {problem}")]
    Malformed { pos: usize, problem: String },
}

/// The result of running a pickle: the arena and the object STOP returned.
#[derive(Debug)]
pub struct Pickle {
    objs: Vec<Object>,
    root: ObjId,
}

impl Pickle {
    pub fn root(&self) -> ObjId {
        self.root
    }

    pub fn get(&self, id: ObjId) -> &Object {
        &self.objs[id]
    }

    /// The string value of `id`, if it is one.
    pub fn as_str(&self, id: ObjId) -> Option<&str> {
        match self.get(id) {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Items of a dict (`None` if `id` is not a dict).
    pub fn dict_items(&self, id: ObjId) -> Option<&[(ObjId, ObjId)]> {
        match self.get(id) {
            Object::Dict(items) => Some(items),
            _ => None,
        }
    }

    /// The value under string key `key` of dict `id` (the last one, as Python would keep).
    pub fn dict_get(&self, id: ObjId, key: &str) -> Option<ObjId> {
        self.dict_items(id)?
            .iter()
            .rev()
            .find(|(k, _)| self.as_str(*k) == Some(key))
            .map(|(_, v)| *v)
    }
}

/// Most nodes a pickle may build (each is 32 bytes). A state dict needs a few per tensor; this
/// only stops a hostile file from turning every byte into a node.
pub const MAX_OBJECTS: usize = 8 << 20;

/// Longest class name quoted in an error: the name comes from the file.
const MAX_NAME_IN_ERROR: usize = 200;

fn class_name(module: &str, name: &str) -> String {
    let mut s = format!("{module}.{name}");
    if s.len() > MAX_NAME_IN_ERROR {
        let mut cut = MAX_NAME_IN_ERROR;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Runs the pickle in `data` and returns its value tree. Never executes code; memory is bounded
/// by a small multiple of `data.len()`.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    parse_limited(data, MAX_OBJECTS)
}

fn parse_limited(data: &[u8], max_objects: usize) -> Result<Pickle, PickleError> {
    Machine {
        max_objects,
        data,
        pos: 0,
        op_pos: 0,
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    max_objects: usize,
    data: &'a [u8],
    pos: usize,
    /// Start of the opcode being run, for error messages.
    op_pos: usize,
    objs: Vec<Object>,
    stack: Vec<ObjId>,
    marks: Vec<usize>,
    memo: HashMap<u64, ObjId>,
}

impl<'a> Machine<'a> {
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

    fn new_obj(&mut self, o: Object) -> ObjId {
        self.objs.push(o);
        self.objs.len() - 1
    }

    fn push(&mut self, o: Object) {
        let id = self.new_obj(o);
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

    /// Two's-complement little-endian integer of LONG1/LONG4.
    fn long_bytes(&self, b: &[u8]) -> Object {
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

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = lookup_global(module, name)
            .ok_or_else(|| PickleError::UnsupportedClass(class_name(module, name)))?;
        self.push(Object::Global(g));
        Ok(())
    }

    fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            // No opcode builds more than three nodes.
            if self.objs.len() > self.max_objects {
                return Err(PickleError::TooManyObjects(self.max_objects));
            }
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.malformed(format!("unsupported pickle protocol {v}")));
                    }
                }
                0x95 => {
                    // FRAME: only a read-ahead hint.
                    self.u64()?;
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        objs: self.objs,
                        root,
                    });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // Like Python: POP on an empty frame drops the mark itself.
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                b'N' => self.push(Object::None),
                0x88 => self.push(Object::Bool(true)),
                0x89 => self.push(Object::Bool(false)),
                b'I' => {
                    let l = self.line()?;
                    let o = match l {
                        "01" => Object::Bool(true),
                        "00" => Object::Bool(false),
                        _ => text_int(l).ok_or_else(|| self.malformed("bad INT argument"))?,
                    };
                    self.push(o);
                }
                b'L' => {
                    let l = self.line()?;
                    let o = text_int(l.strip_suffix('L').unwrap_or(l))
                        .ok_or_else(|| self.malformed("bad LONG argument"))?;
                    self.push(o);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Object::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Object::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Object::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()?;
                    let b = self.take(n as u64)?;
                    let o = self.long_bytes(b);
                    self.push(o);
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.take_array()?);
                    if n < 0 {
                        return Err(self.malformed("negative LONG4 length"));
                    }
                    let b = self.take(n as u64)?;
                    let o = self.long_bytes(b);
                    self.push(o);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Object::Float(v));
                }
                b'F' => {
                    let l = self.line()?;
                    let v = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.malformed("bad FLOAT argument"))?;
                    self.push(Object::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?;
                    let s = self.string(b)?;
                    self.push(Object::Str(s));
                }
                b'V' => {
                    let l = self.line_bytes()?;
                    let s = raw_unicode_escape(l)
                        .ok_or_else(|| self.malformed("bad UNICODE argument"))?;
                    self.push(Object::Str(s));
                }
                b'S' => {
                    let l = self.line()?;
                    let unquoted = l
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| l.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                        .ok_or_else(|| self.malformed("STRING argument is not quoted"))?
                        .to_string();
                    self.push(Object::Str(unquoted));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
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
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Object::Bytes(b));
                }
                b')' => self.push(Object::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Object::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.malformed("stack underflow"));
                    }
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Object::Tuple(items));
                }
                b']' => self.push(Object::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Object::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.extend_list(list, &[v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend_list(list, &items)?;
                }
                b'}' => self.push(Object::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.push(Object::Dict(pairs));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend_dict(d, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    let d = self.top()?;
                    self.extend_dict(d, pairs)?;
                }
                0x8f => self.push(Object::Set(Vec::new())),
                0x90 => {
                    let items = self.pop_mark()?;
                    let s = self.top()?;
                    match &mut self.objs[s] {
                        Object::Set(v) => v.extend(items),
                        other => {
                            let k = other.kind();
                            return Err(self.malformed(format!("ADDITEMS on a {k}")));
                        }
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Object::Set(items));
                }
                b'p' => {
                    let idx = self
                        .line()?
                        .parse::<u64>()
                        .map_err(|_| self.malformed("bad PUT index"))?;
                    self.memo_put(idx)?;
                }
                b'q' => {
                    let idx = self.u8()? as u64;
                    self.memo_put(idx)?;
                }
                b'r' => {
                    let idx = self.u32()? as u64;
                    self.memo_put(idx)?;
                }
                0x94 => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                b'g' => {
                    let idx = self
                        .line()?
                        .parse::<u64>()
                        .map_err(|_| self.malformed("bad GET index"))?;
                    self.memo_get(idx)?;
                }
                b'h' => {
                    let idx = self.u8()? as u64;
                    self.memo_get(idx)?;
                }
                b'j' => {
                    let idx = self.u32()? as u64;
                    self.memo_get(idx)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (
                        self.str_of(module).map(str::to_string),
                        self.str_of(name).map(str::to_string),
                    ) else {
                        return Err(self.malformed("STACK_GLOBAL arguments are not strings"));
                    };
                    self.global(&module, &name)?;
                }
                b'R' | 0x81 => {
                    // REDUCE f(*args) / NEWOBJ cls.__new__(cls, *args): both only build nodes.
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let o = self.call(f, args, 0)?;
                    self.stack.push(o);
                }
                0x92 => {
                    // NEWOBJ_EX: keyword arguments are not used by anything we allow.
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let o = self.call(f, args, 0)?;
                    self.stack.push(o);
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = lookup_global(module, name)
                        .ok_or_else(|| PickleError::UnsupportedClass(class_name(module, name)))?;
                    let items = self.pop_mark()?;
                    let f = self.new_obj(Object::Global(g));
                    let args = self.new_obj(Object::Tuple(items));
                    let o = self.call(f, args, 0)?;
                    self.stack.push(o);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.malformed("OBJ without a class"));
                    }
                    let f = items.remove(0);
                    let args = self.new_obj(Object::Tuple(items));
                    let o = self.call(f, args, 0)?;
                    self.stack.push(o);
                }
                b'b' => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`): irrelevant to the
                    // tensors, and applying them would mean running __setstate__.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let o = self.persistent_load(pid)?;
                    self.push(o);
                }
                b'P' => {
                    return Err(PickleError::Unsupported {
                        what: "PERSID (text persistent id)",
                        pos: self.op_pos,
                    })
                }
                0x82..=0x84 => {
                    return Err(PickleError::Unsupported {
                        what: "extension registry (EXT1/EXT2/EXT4)",
                        pos: self.op_pos,
                    })
                }
                0x97 | 0x98 => {
                    return Err(PickleError::Unsupported {
                        what: "out-of-band buffers",
                        pos: self.op_pos,
                    })
                }
                _ => {
                    return Err(PickleError::UnknownOpcode {
                        op,
                        pos: self.op_pos,
                    })
                }
            }
        }
    }

    fn str_of(&self, id: ObjId) -> Option<&str> {
        match &self.objs[id] {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    fn pairs(&self, items: &[ObjId]) -> Result<Vec<(ObjId, ObjId)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    fn extend_list(&mut self, list: ObjId, items: &[ObjId]) -> Result<(), PickleError> {
        match &mut self.objs[list] {
            Object::List(v) => {
                v.extend_from_slice(items);
                Ok(())
            }
            other => {
                let k = other.kind();
                Err(self.malformed(format!("APPEND to a {k}")))
            }
        }
    }

    fn extend_dict(&mut self, dict: ObjId, pairs: Vec<(ObjId, ObjId)>) -> Result<(), PickleError> {
        match &mut self.objs[dict] {
            Object::Dict(v) => {
                v.extend(pairs);
                Ok(())
            }
            other => {
                let k = other.kind();
                Err(self.malformed(format!("SETITEM on a {k}")))
            }
        }
    }

    fn tuple_items(&self, id: ObjId, what: &str) -> Result<Vec<ObjId>, PickleError> {
        match &self.objs[id] {
            Object::Tuple(v) | Object::List(v) => Ok(v.clone()),
            other => {
                Err(self.malformed(format!("{what}: expected a tuple, found {}", other.kind())))
            }
        }
    }

    fn uint(&self, id: ObjId, what: &str) -> Result<u64, PickleError> {
        match &self.objs[id] {
            Object::Int(v) if *v >= 0 => Ok(*v as u64),
            Object::Bool(b) => Ok(*b as u64),
            other => Err(self.malformed(format!(
                "{what}: expected a non-negative int, found {}",
                match other {
                    Object::Int(v) => v.to_string(),
                    o => o.kind().to_string(),
                }
            ))),
        }
    }

    fn usizes(&self, id: ObjId, what: &str) -> Result<Vec<usize>, PickleError> {
        self.tuple_items(id, what)?
            .into_iter()
            .map(|i| {
                let v = self.uint(i, what)?;
                usize::try_from(v).map_err(|_| self.malformed(format!("{what}: {v} is too large")))
            })
            .collect()
    }

    /// "Calls" an allow-listed global by building the node it would return.
    fn call(&mut self, f: ObjId, args: ObjId, depth: u8) -> Result<ObjId, PickleError> {
        let g = match &self.objs[f] {
            Object::Global(g) => *g,
            other => {
                let k = other.kind();
                return Err(self.malformed(format!("call of a {k}")));
            }
        };
        let a = self.tuple_items(args, "arguments")?;
        let arg = |i: usize| -> Result<ObjId, PickleError> {
            a.get(i).copied().ok_or_else(|| {
                self.malformed(format!("{g:?} needs more than {} arguments", a.len()))
            })
        };
        let o = match g {
            Global::OrderedDict => {
                let mut pairs = Vec::new();
                if let Some(&items) = a.first() {
                    for p in self.tuple_items(items, "OrderedDict items")? {
                        let kv = self.tuple_items(p, "OrderedDict item")?;
                        if kv.len() != 2 {
                            return Err(self.malformed("OrderedDict item is not a pair"));
                        }
                        pairs.push((kv[0], kv[1]));
                    }
                }
                Object::Dict(pairs)
            }
            Global::Set | Global::FrozenSet => {
                let items = match a.first() {
                    Some(&i) => self.tuple_items(i, "set items")?,
                    None => Vec::new(),
                };
                Object::Set(items)
            }
            Global::CodecsEncode => {
                let s = self
                    .str_of(arg(0)?)
                    .ok_or_else(|| self.malformed("_codecs.encode of a non-string"))?;
                let enc = a.get(1).and_then(|&e| self.str_of(e)).unwrap_or("utf-8");
                let bytes = match enc.to_ascii_lowercase().as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" => s
                        .chars()
                        .map(|c| u8::try_from(c as u32))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| self.malformed("latin1 string with a character above 255"))?,
                    "utf-8" | "utf8" => s.as_bytes().to_vec(),
                    _ => return Err(self.malformed(format!("_codecs.encode to {enc}"))),
                };
                Object::Bytes(bytes)
            }
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                let storage = match &self.objs[arg(0)?] {
                    Object::Storage(s) => (**s).clone(),
                    other => {
                        return Err(self.malformed(format!(
                            "tensor built from a {} instead of a storage",
                            other.kind()
                        )))
                    }
                };
                let storage_offset = self.uint(arg(1)?, "storage offset")?;
                let shape = self.usizes(arg(2)?, "tensor size")?;
                let strides = self.usizes(arg(3)?, "tensor stride")?;
                if shape.len() != strides.len() {
                    return Err(self.malformed(format!(
                        "tensor with {} sizes but {} strides",
                        shape.len(),
                        strides.len()
                    )));
                }
                Object::Tensor(Box::new(TensorRef {
                    storage,
                    storage_offset,
                    shape,
                    strides,
                }))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                // A Parameter is its data; requires_grad, hooks and state do not matter here.
                let data = arg(0)?;
                if !matches!(self.objs[data], Object::Tensor(_)) {
                    return Err(self.malformed("parameter built from a non-tensor"));
                }
                return Ok(data);
            }
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): a tensor subclass; we keep the plain tensor.
                let func = arg(0)?;
                if !matches!(self.objs[arg(1)?], Object::Global(Global::TensorClass)) {
                    return Err(
                        self.malformed("_rebuild_from_type_v2 of a class that is not a tensor")
                    );
                }
                if depth > 0 || matches!(self.objs[func], Object::Global(Global::RebuildFromTypeV2))
                {
                    return Err(self.malformed("nested _rebuild_from_type_v2"));
                }
                let inner = arg(2)?;
                return self.call(func, inner, depth + 1);
            }
            Global::TorchSize => return arg(0),
            Global::TorchDevice => {
                let kind = self
                    .str_of(arg(0)?)
                    .ok_or_else(|| self.malformed("torch.device of a non-string"))?;
                match a.get(1).map(|&i| &self.objs[i]) {
                    Some(Object::Int(i)) => Object::Str(format!("{kind}:{i}")),
                    _ => Object::Str(kind.to_string()),
                }
            }
            Global::NumpyDType => {
                let code = self
                    .str_of(arg(0)?)
                    .ok_or_else(|| self.malformed("numpy.dtype of a non-string"))?;
                Object::NumpyDType(code.to_string())
            }
            Global::NumpyScalar => {
                let code = match &self.objs[arg(0)?] {
                    Object::NumpyDType(c) => c.as_str(),
                    other => {
                        return Err(self.malformed(format!(
                            "numpy scalar of a {} instead of a dtype",
                            other.kind()
                        )))
                    }
                };
                match &self.objs[arg(1)?] {
                    Object::Bytes(b) => {
                        numpy_scalar(code, b).unwrap_or_else(|| Object::Bytes(b.clone()))
                    }
                    other => {
                        return Err(self.malformed(format!(
                            "numpy scalar from a {} instead of bytes",
                            other.kind()
                        )))
                    }
                }
            }
            Global::StorageType(..) | Global::TorchDType | Global::TensorClass => {
                return Err(self.malformed(format!("{g:?} called like a function")));
            }
        };
        Ok(self.new_obj(o))
    }

    /// torch's persistent ids: `('storage', storage_type, key, location, numel)`.
    fn persistent_load(&mut self, pid: ObjId) -> Result<Object, PickleError> {
        let items = self.tuple_items(pid, "persistent id")?;
        if items.len() != 5 || self.str_of(items[0]) != Some("storage") {
            return Err(
                self.malformed("persistent id is not ('storage', type, key, location, numel)")
            );
        }
        let dtype = match &self.objs[items[1]] {
            Object::Global(Global::StorageType(Some(d), _)) => *d,
            Object::Global(Global::StorageType(None, name)) => {
                return Err(PickleError::UnsupportedStorage(name))
            }
            other => {
                return Err(self.malformed(format!(
                    "persistent id names a {} instead of a storage type",
                    other.kind()
                )))
            }
        };
        let key = self
            .str_of(items[2])
            .ok_or_else(|| self.malformed("storage key is not a string"))?
            .to_string();
        let location = self.str_of(items[3]).unwrap_or("").to_string();
        let numel = self.uint(items[4], "storage size")?;
        Ok(Object::Storage(Box::new(StorageRef {
            key,
            dtype,
            numel,
            location,
        })))
    }
}

/// The value of a numpy scalar from its dtype code and (little-endian) bytes; `None` for types
/// it does not decode, which are then kept as bytes.
fn numpy_scalar(code: &str, b: &[u8]) -> Option<Object> {
    fn arr<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.try_into().ok()
    }
    Some(match code {
        "f8" => Object::Float(f64::from_le_bytes(arr(b)?)),
        "f4" => Object::Float(f32::from_le_bytes(arr(b)?) as f64),
        "f2" => Object::Float(half::f16::from_le_bytes(arr(b)?).to_f64()),
        "i8" => Object::Int(i64::from_le_bytes(arr(b)?)),
        "i4" => Object::Int(i32::from_le_bytes(arr(b)?) as i64),
        "i2" => Object::Int(i16::from_le_bytes(arr(b)?) as i64),
        "i1" => Object::Int(i8::from_le_bytes(arr(b)?) as i64),
        "u8" => i64::try_from(u64::from_le_bytes(arr(b)?)).map_or(Object::BigInt, Object::Int),
        "u4" => Object::Int(u32::from_le_bytes(arr(b)?) as i64),
        "u2" => Object::Int(u16::from_le_bytes(arr(b)?) as i64),
        "u1" => Object::Int(u8::from_le_bytes(arr(b)?) as i64),
        "b1" => Object::Bool(arr::<1>(b)?[0] != 0),
        _ => return None,
    })
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

    fn run(bytes: &[u8]) -> Result<Pickle, PickleError> {
        parse(bytes)
    }

    #[test]
    fn plain_data_protocol_2() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'x',)}, protocol=2) by hand:
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend_from_slice(b"X\x01\x00\x00\x00a");
        p.extend_from_slice(b"]q\x01(K\x01J\xfe\xff\xff\xffG");
        p.extend_from_slice(&3.5f64.to_be_bytes());
        p.extend_from_slice(b"N\x88e");
        p.extend_from_slice(b"X\x01\x00\x00\x00bC\x01x\x85u.");
        let pk = run(&p).unwrap();
        let root = pk.root();
        let a = pk.dict_get(root, "a").unwrap();
        let Object::List(items) = pk.get(a) else {
            panic!("not a list")
        };
        let vals: Vec<_> = items.iter().map(|&i| pk.get(i).clone()).collect();
        assert_eq!(
            vals,
            vec![
                Object::Int(1),
                Object::Int(-2),
                Object::Float(3.5),
                Object::None,
                Object::Bool(true)
            ]
        );
        let b = pk.dict_get(root, "b").unwrap();
        let Object::Tuple(t) = pk.get(b) else {
            panic!("not a tuple")
        };
        assert_eq!(pk.get(t[0]), &Object::Bytes(b"x".to_vec()));
    }

    #[test]
    fn memoised_dict_is_one_object() {
        // d = {}; memo it; fetch it into a list; then fill it: the list sees the items.
        // Stack after APPEND: [d, list]; POP the list so SETITEM targets d.
        let mut q = vec![0x80, 2, b'}', b'q', 0, b']', b'q', 1, b'h', 0, b'a', b'0'];
        q.extend_from_slice(b"X\x01\x00\x00\x00kK\x07sh\x01.");
        let pk = run(&q).unwrap();
        let Object::List(items) = pk.get(pk.root()) else {
            panic!("not a list")
        };
        let v = pk.dict_get(items[0], "k").unwrap();
        assert_eq!(pk.get(v), &Object::Int(7));
    }

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

    #[test]
    fn nodes_stay_small_and_few() {
        assert!(std::mem::size_of::<Object>() <= 32);
        let mut p = vec![0x80, 2, b'('];
        p.extend(std::iter::repeat_n(b'N', 1000));
        p.extend_from_slice(b"l.");
        assert!(parse_limited(&p, 1001).is_ok());
        let e = parse_limited(&p, 999).unwrap_err();
        assert_eq!(e, PickleError::TooManyObjects(999));
    }

    #[test]
    fn numpy_scalars() {
        assert_eq!(numpy_scalar("f2", &[0x00, 0x3c]), Some(Object::Float(1.0)));
        assert_eq!(numpy_scalar("u8", &[0xff; 8]), Some(Object::BigInt));
        assert_eq!(numpy_scalar("i1", &[0xfe]), Some(Object::Int(-2)));
        assert_eq!(numpy_scalar("f8", &[0; 4]), None, "wrong length");
        assert_eq!(numpy_scalar("c16", &[0; 16]), None);
    }

    #[test]
    fn long_integers() {
        let pk = run(b"\x80\x02(\x8a\x02\xff\x7f\x8a\x01\xff\x8a\x00\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09l.").unwrap();
        let Object::List(items) = pk.get(pk.root()) else {
            panic!("not a list")
        };
        let vals: Vec<_> = items.iter().map(|&i| pk.get(i).clone()).collect();
        assert_eq!(
            vals,
            vec![
                Object::Int(0x7fff),
                Object::Int(-1),
                Object::Int(0),
                Object::BigInt
            ]
        );
    }

    #[test]
    fn refuses_unknown_globals() {
        let e = run(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.").unwrap_err();
        assert_eq!(
            e.to_string(),
            "refuses to load class posix.system (not a tensor or plain data)"
        );
        // STACK_GLOBAL and INST go through the same allow-list.
        let e = run(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.").unwrap_err();
        assert_eq!(e, PickleError::UnsupportedClass("builtins.eval".into()));
        let e = run(b"(ios\nsystem\nS'ls'\n.").unwrap_err();
        assert_eq!(e, PickleError::UnsupportedClass("os.system".into()));
        // torch itself is not a blanket pass.
        let e = run(b"\x80\x02ctorch\nload\n.").unwrap_err();
        assert_eq!(e, PickleError::UnsupportedClass("torch.load".into()));
    }

    #[test]
    fn calling_a_class_reference_is_refused() {
        // torch.HalfStorage is allowed as a name for persistent ids, never as a call.
        let e = run(b"\x80\x02ctorch\nHalfStorage\n)R.").unwrap_err();
        assert!(matches!(e, PickleError::Malformed { .. }), "{e}");
    }

    #[test]
    fn tensor_from_persistent_storage() {
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nBFloat16Storage\nX\x01\x00\x00\x003X\x03\x00\x00\x00cpuK\x0ctQ".to_vec();
        p.extend_from_slice(
            b"K\x02K\x02K\x03\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)RtR.",
        );
        let pk = run(&p).unwrap();
        let Object::Tensor(t) = pk.get(pk.root()) else {
            panic!("not a tensor: {:?}", pk.get(pk.root()))
        };
        assert_eq!(t.storage.key, "3");
        assert_eq!(t.storage.dtype, DType::BF16);
        assert_eq!(t.storage.numel, 12);
        assert_eq!(t.storage_offset, 2);
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.strides, vec![1, 2]);
    }

    #[test]
    fn truncated_and_garbage_input_fail_cleanly() {
        let full = b"\x80\x02}q\x00X\x03\x00\x00\x00abcK\x01s.";
        for n in 0..full.len() {
            assert!(run(&full[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        assert!(run(full).is_ok());
        // A length far beyond the data is checked before anything is allocated.
        let e = run(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").unwrap_err();
        assert_eq!(e, PickleError::Truncated(11));
        let e = run(b"\x80\x02\xff").unwrap_err();
        assert_eq!(e, PickleError::UnknownOpcode { op: 0xff, pos: 2 });
        assert!(run(b"\x80\x02.").is_err());
        assert!(run(b"\x80\x02h\x05.").is_err());
        assert!(
            run(b"\x80\x02(K\x01\x86.").is_err(),
            "TUPLE2 may not reach below a mark"
        );
    }

    #[test]
    fn self_referencing_containers_stay_bounded() {
        // l = []; l.append(l) many times: ids, not copies.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..10_000 {
            p.extend_from_slice(b"h\x00a");
        }
        p.push(b'.');
        let pk = run(&p).unwrap();
        let Object::List(items) = pk.get(pk.root()) else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 10_000);
        assert!(pk.objs.len() < 10);
    }
}
