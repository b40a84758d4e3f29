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
//!
//! Three parts: [`opcode`] (the opcodes, decoded once from their byte), `machine` (the stack
//! machine that runs them) and [`object`] (the values, the allow-list and what calling an
//! allowed global builds).

mod machine;
pub mod object;
pub mod opcode;

pub use object::{lookup_global, Global, ObjId, Object, StorageRef, TensorRef};
pub use opcode::Op;

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

/// Runs the pickle in `data` and returns its value tree. Never executes code; memory is bounded
/// by a small multiple of `data.len()`.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    parse_limited(data, MAX_OBJECTS)
}

fn parse_limited(data: &[u8], max_objects: usize) -> Result<Pickle, PickleError> {
    machine::Machine::new(data, max_objects).run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::DType;

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
    fn unknown_opcodes_name_the_byte_and_its_offset() {
        // EMPTY_LIST, BINPUT 0, then 0x99 (one past protocol 5's last opcode) at byte 5.
        let e = run(b"\x80\x05]q\x00\x99.").unwrap_err();
        assert_eq!(e.to_string(), "unknown pickle opcode 0x99 at byte 5");
        // Every byte that is no opcode is refused where it stands, never skipped or guessed.
        for byte in (0..=255u8).filter(|&b| Op::decode(b).is_none()) {
            let e = run(&[0x80, 2, b'N', byte, b'.']).unwrap_err();
            assert_eq!(e, PickleError::UnknownOpcode { op: byte, pos: 3 });
        }
    }

    #[test]
    fn containers_take_only_their_own_opcodes() {
        for (p, msg) in [
            (&b"\x80\x02}K\x01a."[..], "APPEND to a dict"),
            (b"\x80\x02]K\x01K\x02s.", "SETITEM on a list"),
            (b"\x80\x04](K\x01\x90.", "ADDITEMS on a list"),
        ] {
            let e = run(p).unwrap_err();
            assert_eq!(
                e,
                PickleError::Malformed {
                    pos: p.len() - 2,
                    problem: msg.into()
                }
            );
        }
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
