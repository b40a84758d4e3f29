//! The object model: the inert Python values a pickle builds, the allow-list of globals, and
//! what "calling" one of them builds (an OrderedDict, a set, a tensor view of a storage, a numpy
//! scalar) — never any code of the file's choosing.
//!
//! Objects live in an [`Arena`] and containers hold ids, so a memoised object mutated later
//! stays one object and fetching a big container again costs one id, not a copy.

use super::PickleError;
use crate::checkpoint::DType;

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

/// Longest class name quoted in an error: the name comes from the file.
const MAX_NAME_IN_ERROR: usize = 200;

/// `module.name` for an error message, cut to [`MAX_NAME_IN_ERROR`] bytes.
pub(super) fn class_name(module: &str, name: &str) -> String {
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

/// Why the object model refused an operation; the machine adds the opcode's position.
#[derive(Debug)]
pub(super) enum Fault {
    Malformed(String),
    UnsupportedStorage(&'static str),
}

impl Fault {
    pub(super) fn at(self, pos: usize) -> PickleError {
        match self {
            Fault::Malformed(problem) => PickleError::Malformed { pos, problem },
            Fault::UnsupportedStorage(name) => PickleError::UnsupportedStorage(name),
        }
    }
}

fn malformed(problem: impl Into<String>) -> Fault {
    Fault::Malformed(problem.into())
}

/// What an opcode adds to a container.
pub(super) enum Items<'a> {
    List(&'a [ObjId]),
    Dict(Vec<(ObjId, ObjId)>),
    Set(Vec<ObjId>),
}

impl Items<'_> {
    /// The opcode, for an error message.
    fn op(&self) -> &'static str {
        match self {
            Items::List(_) => "APPEND to",
            Items::Dict(_) => "SETITEM on",
            Items::Set(_) => "ADDITEMS on",
        }
    }
}

/// The objects of one pickle, indexed by [`ObjId`].
#[derive(Debug, Default)]
pub(super) struct Arena {
    objs: Vec<Object>,
}

impl Arena {
    pub(super) fn len(&self) -> usize {
        self.objs.len()
    }

    pub(super) fn into_objects(self) -> Vec<Object> {
        self.objs
    }

    pub(super) fn add(&mut self, o: Object) -> ObjId {
        self.objs.push(o);
        self.objs.len() - 1
    }

    pub(super) fn str_of(&self, id: ObjId) -> Option<&str> {
        match &self.objs[id] {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    /// APPEND(S), SETITEM(S), ADDITEMS: adds `items` to the container `target`, which must be
    /// of their kind.
    pub(super) fn extend(&mut self, target: ObjId, items: Items) -> Result<(), Fault> {
        match (&mut self.objs[target], items) {
            (Object::List(v), Items::List(i)) => v.extend_from_slice(i),
            (Object::Dict(v), Items::Dict(i)) => v.extend(i),
            (Object::Set(v), Items::Set(i)) => v.extend(i),
            (other, items) => {
                return Err(malformed(format!("{} a {}", items.op(), other.kind())));
            }
        }
        Ok(())
    }

    fn tuple_items(&self, id: ObjId, what: &str) -> Result<Vec<ObjId>, Fault> {
        match &self.objs[id] {
            Object::Tuple(v) | Object::List(v) => Ok(v.clone()),
            other => Err(malformed(format!(
                "{what}: expected a tuple, found {}",
                other.kind()
            ))),
        }
    }

    fn uint(&self, id: ObjId, what: &str) -> Result<u64, Fault> {
        match &self.objs[id] {
            Object::Int(v) if *v >= 0 => Ok(*v as u64),
            Object::Bool(b) => Ok(*b as u64),
            other => Err(malformed(format!(
                "{what}: expected a non-negative int, found {}",
                match other {
                    Object::Int(v) => v.to_string(),
                    o => o.kind().to_string(),
                }
            ))),
        }
    }

    fn usizes(&self, id: ObjId, what: &str) -> Result<Vec<usize>, Fault> {
        self.tuple_items(id, what)?
            .into_iter()
            .map(|i| {
                let v = self.uint(i, what)?;
                usize::try_from(v).map_err(|_| malformed(format!("{what}: {v} is too large")))
            })
            .collect()
    }

    /// "Calls" an allow-listed global by building the node it would return.
    pub(super) fn call(&mut self, f: ObjId, args: ObjId, depth: u8) -> Result<ObjId, Fault> {
        let g = match &self.objs[f] {
            Object::Global(g) => *g,
            other => {
                let k = other.kind();
                return Err(malformed(format!("call of a {k}")));
            }
        };
        let a = self.tuple_items(args, "arguments")?;
        let arg = |i: usize| -> Result<ObjId, Fault> {
            a.get(i)
                .copied()
                .ok_or_else(|| malformed(format!("{g:?} needs more than {} arguments", a.len())))
        };
        let o = match g {
            Global::OrderedDict => {
                let mut pairs = Vec::new();
                if let Some(&items) = a.first() {
                    for p in self.tuple_items(items, "OrderedDict items")? {
                        let kv = self.tuple_items(p, "OrderedDict item")?;
                        if kv.len() != 2 {
                            return Err(malformed("OrderedDict item is not a pair"));
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
                    .ok_or_else(|| malformed("_codecs.encode of a non-string"))?;
                let enc = a.get(1).and_then(|&e| self.str_of(e)).unwrap_or("utf-8");
                let bytes = match enc.to_ascii_lowercase().as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" => s
                        .chars()
                        .map(|c| u8::try_from(c as u32))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| malformed("latin1 string with a character above 255"))?,
                    "utf-8" | "utf8" => s.as_bytes().to_vec(),
                    _ => return Err(malformed(format!("_codecs.encode to {enc}"))),
                };
                Object::Bytes(bytes)
            }
            Global::RebuildTensor | Global::RebuildTensorV2 => {
                let storage = match &self.objs[arg(0)?] {
                    Object::Storage(s) => (**s).clone(),
                    other => {
                        return Err(malformed(format!(
                            "tensor built from a {} instead of a storage",
                            other.kind()
                        )))
                    }
                };
                let storage_offset = self.uint(arg(1)?, "storage offset")?;
                let shape = self.usizes(arg(2)?, "tensor size")?;
                let strides = self.usizes(arg(3)?, "tensor stride")?;
                if shape.len() != strides.len() {
                    return Err(malformed(format!(
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
                    return Err(malformed("parameter built from a non-tensor"));
                }
                return Ok(data);
            }
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): a tensor subclass; we keep the plain tensor.
                let func = arg(0)?;
                if !matches!(self.objs[arg(1)?], Object::Global(Global::TensorClass)) {
                    return Err(malformed(
                        "_rebuild_from_type_v2 of a class that is not a tensor",
                    ));
                }
                if depth > 0 || matches!(self.objs[func], Object::Global(Global::RebuildFromTypeV2))
                {
                    return Err(malformed("nested _rebuild_from_type_v2"));
                }
                let inner = arg(2)?;
                return self.call(func, inner, depth + 1);
            }
            Global::TorchSize => return arg(0),
            Global::TorchDevice => {
                let kind = self
                    .str_of(arg(0)?)
                    .ok_or_else(|| malformed("torch.device of a non-string"))?;
                match a.get(1).map(|&i| &self.objs[i]) {
                    Some(Object::Int(i)) => Object::Str(format!("{kind}:{i}")),
                    _ => Object::Str(kind.to_string()),
                }
            }
            Global::NumpyDType => {
                let code = self
                    .str_of(arg(0)?)
                    .ok_or_else(|| malformed("numpy.dtype of a non-string"))?;
                Object::NumpyDType(code.to_string())
            }
            Global::NumpyScalar => {
                let code = match &self.objs[arg(0)?] {
                    Object::NumpyDType(c) => c.as_str(),
                    other => {
                        return Err(malformed(format!(
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
                        return Err(malformed(format!(
                            "numpy scalar from a {} instead of bytes",
                            other.kind()
                        )))
                    }
                }
            }
            Global::StorageType(..) | Global::TorchDType | Global::TensorClass => {
                return Err(malformed(format!("{g:?} called like a function")));
            }
        };
        Ok(self.add(o))
    }

    /// torch's persistent ids: `('storage', storage_type, key, location, numel)`.
    pub(super) fn persistent_load(&mut self, pid: ObjId) -> Result<Object, Fault> {
        let items = self.tuple_items(pid, "persistent id")?;
        if items.len() != 5 || self.str_of(items[0]) != Some("storage") {
            return Err(malformed(
                "persistent id is not ('storage', type, key, location, numel)",
            ));
        }
        let dtype = match &self.objs[items[1]] {
            Object::Global(Global::StorageType(Some(d), _)) => *d,
            Object::Global(Global::StorageType(None, name)) => {
                return Err(Fault::UnsupportedStorage(name))
            }
            other => {
                return Err(malformed(format!(
                    "persistent id names a {} instead of a storage type",
                    other.kind()
                )))
            }
        };
        let key = self
            .str_of(items[2])
            .ok_or_else(|| malformed("storage key is not a string"))?
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

/// Dict items from a flat `[k0, v0, k1, v1, ...]` (DICT, SETITEMS).
pub(super) fn pairs(items: &[ObjId]) -> Result<Vec<(ObjId, ObjId)>, Fault> {
    if !items.len().is_multiple_of(2) {
        return Err(malformed("odd number of items for a dict"));
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_scalars() {
        assert_eq!(numpy_scalar("f2", &[0x00, 0x3c]), Some(Object::Float(1.0)));
        assert_eq!(numpy_scalar("u8", &[0xff; 8]), Some(Object::BigInt));
        assert_eq!(numpy_scalar("i1", &[0xfe]), Some(Object::Int(-2)));
        assert_eq!(numpy_scalar("f8", &[0; 4]), None, "wrong length");
        assert_eq!(numpy_scalar("c16", &[0; 16]), None);
    }
}
