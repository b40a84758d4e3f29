//! Reads the `torch.save` fixtures (tests/fixtures/gen_torch.py) and compares every tensor with
//! the expected values the generator wrote beside them with the `safetensors` package.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use lawa::checkpoint::torch::{
    read_bin_index, read_torch_index, torch_tensor_bytes, TorchError, TorchTensor,
};
use lawa::checkpoint::DType;

fn fixture(name: &str) -> PathBuf {
    crate::support::fixture("torch").join(name)
}

/// One tensor of an expected file: f32 values, shape, and the original torch dtype name.
struct Expected {
    shape: Vec<usize>,
    values: Vec<f32>,
    dtype: String,
}

/// A minimal safetensors reader (F32 only), independent of the code under test.
fn read_expected(path: &Path) -> (Vec<String>, HashMap<String, Expected>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["expected"].as_str().unwrap()).unwrap();
    let dtypes: BTreeMap<String, String> = serde_json::from_value(meta["dtypes"].clone()).unwrap();
    let order: Vec<String> = serde_json::from_value(meta["order"].clone()).unwrap();
    let mut out = HashMap::new();
    for (name, v) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(v["dtype"], "F32");
        let shape: Vec<usize> = v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let off: Vec<usize> = v["data_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let values = data[off[0]..off[1]]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let dtype = dtypes[name].clone();
        out.insert(
            name.clone(),
            Expected {
                shape,
                values,
                dtype,
            },
        );
    }
    (order, out)
}

fn torch_dtype_name(d: DType) -> &'static str {
    match d {
        DType::Bool => "bool",
        DType::U8 => "uint8",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
        DType::F64 => "float64",
    }
}

/// Decodes raw little-endian tensor bytes to f32 the way `tensor.to(torch.float32)` does.
fn to_f32(d: DType, bytes: &[u8]) -> Vec<f32> {
    let es = d.size_in_bytes();
    assert_eq!(bytes.len() % es, 0);
    bytes
        .chunks_exact(es)
        .map(|c| match d {
            DType::Bool => {
                assert!(c[0] <= 1, "bool byte {}", c[0]);
                c[0] as f32
            }
            DType::U8 => c[0] as f32,
            DType::I8 => c[0] as i8 as f32,
            DType::I16 => i16::from_le_bytes([c[0], c[1]]) as f32,
            DType::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f32,
            DType::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f32,
            DType::F16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
            DType::BF16 => bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            DType::F32 => f32::from_le_bytes(c.try_into().unwrap()),
            DType::F64 => f64::from_le_bytes(c.try_into().unwrap()) as f32,
        })
        .collect()
}

/// Checks every tensor of `got` (from `files`) against the expected file: same names in the same
/// order, same dtypes and shapes, bit-identical values.
fn check_against_expected(got: &[(TorchTensor, PathBuf)], expected: &Path) {
    let (order, expected) = read_expected(expected);
    let names: Vec<&str> = got.iter().map(|(t, _)| t.info.name.as_str()).collect();
    assert_eq!(names, order);
    let mut files: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for (t, file) in got {
        let bytes = files
            .entry(file.clone())
            .or_insert_with(|| std::fs::read(file).unwrap());
        let e = &expected[&t.info.name];
        assert_eq!(torch_dtype_name(t.info.dtype), e.dtype, "{}", t.info.name);
        assert_eq!(t.info.shape, e.shape, "{}", t.info.name);
        let data = torch_tensor_bytes(bytes, t).unwrap();
        assert_eq!(data.len(), t.info.nbytes(), "{}", t.info.name);
        let vals = to_f32(t.info.dtype, &data);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&vals), bits(&e.values), "{}", t.info.name);
    }
}

fn read_one(name: &str) -> Vec<(TorchTensor, PathBuf)> {
    let path = fixture(name);
    read_torch_index(&path)
        .unwrap()
        .into_iter()
        .map(|t| (t, path.clone()))
        .collect()
}

fn pythia_names() -> Vec<String> {
    let mut names = vec!["gpt_neox.embed_in.weight".to_string()];
    for i in 0..2 {
        for s in [
            "input_layernorm.weight",
            "input_layernorm.bias",
            "post_attention_layernorm.weight",
            "post_attention_layernorm.bias",
            "attention.bias",
            "attention.masked_bias",
            "attention.rotary_emb.inv_freq",
            "attention.query_key_value.weight",
            "attention.query_key_value.bias",
            "attention.dense.weight",
            "attention.dense.bias",
            "mlp.dense_h_to_4h.weight",
            "mlp.dense_h_to_4h.bias",
            "mlp.dense_4h_to_h.weight",
            "mlp.dense_4h_to_h.bias",
        ] {
            names.push(format!("gpt_neox.layers.{i}.{s}"));
        }
    }
    names.extend(
        [
            "gpt_neox.final_layer_norm.weight",
            "gpt_neox.final_layer_norm.bias",
            "embed_out.weight",
        ]
        .map(String::from),
    );
    names
}

#[test]
fn pythia_fp16_bin() {
    let got = read_one("pythia_fp16.bin");
    let names: Vec<String> = got.iter().map(|(t, _)| t.info.name.clone()).collect();
    assert_eq!(names, pythia_names());
    let by_name: HashMap<&str, &TorchTensor> =
        got.iter().map(|(t, _)| (t.info.name.as_str(), t)).collect();
    let bias = by_name["gpt_neox.layers.0.attention.bias"];
    assert_eq!(bias.info.dtype, DType::Bool);
    assert_eq!(bias.info.shape, vec![1, 1, 8, 8]);
    let masked = by_name["gpt_neox.layers.1.attention.masked_bias"];
    assert_eq!(masked.info.dtype, DType::F16);
    assert!(masked.info.shape.is_empty(), "0-d tensor");
    let qkv = by_name["gpt_neox.layers.1.attention.query_key_value.weight"];
    assert_eq!(
        (qkv.info.dtype, qkv.info.shape.clone()),
        (DType::F16, vec![48, 16])
    );
    // Storage data is 64-byte aligned in torch archives: a memory map can be viewed in place.
    assert!(got.iter().all(|(t, _)| t.data_offset % 64 == 0));
    check_against_expected(&got, &fixture("pythia_fp16.bin.expected.safetensors"));
}

#[test]
fn pythia_bf16_f32_and_protocol_5() {
    for name in [
        "pythia_bf16.bin",
        "pythia_f32.bin",
        "pythia_fp16_proto5.bin",
    ] {
        let got = read_one(name);
        assert_eq!(got.len(), pythia_names().len(), "{name}");
        check_against_expected(&got, &fixture(&format!("{name}.expected.safetensors")));
    }
}

#[test]
fn contiguous_tensors_are_borrowed_from_the_file() {
    let path = fixture("pythia_fp16.bin");
    let file = std::fs::read(&path).unwrap();
    for t in read_torch_index(&path).unwrap() {
        let b = torch_tensor_bytes(&file, &t).unwrap();
        assert!(matches!(b, Cow::Borrowed(_)), "{} was copied", t.info.name);
        let start = t.data_offset as usize;
        assert_eq!(&*b, &file[start..start + t.info.nbytes()]);
    }
}

#[test]
fn sharded_bin_with_index() {
    let index = fixture("pythia_sharded/pytorch_model.bin.index.json");
    let map = read_bin_index(&index).unwrap();
    assert_eq!(map.len(), pythia_names().len());
    let shards: std::collections::BTreeSet<&PathBuf> = map.values().collect();
    assert_eq!(shards.len(), 2);
    let mut got = Vec::new();
    for shard in shards {
        assert!(shard.starts_with(index.parent().unwrap()));
        for t in read_torch_index(shard).unwrap() {
            assert_eq!(&map[&t.info.name], shard, "{}", t.info.name);
            got.push((t, shard.clone()));
        }
    }
    check_against_expected(
        &got,
        &fixture("pythia_sharded/pytorch_model.expected.safetensors"),
    );
}

#[test]
fn nanogpt_ckpt_pt() {
    let got = read_one("nanogpt_ckpt.pt");
    // The weights under `model`, `_orig_mod.` stripped; optimizer state and the rest ignored.
    assert!(got
        .iter()
        .all(|(t, _)| !t.info.name.starts_with("_orig_mod.")));
    check_against_expected(&got, &fixture("nanogpt_ckpt.pt.expected.safetensors"));
    // Weight tying: one storage, two names.
    let find = |n: &str| &got.iter().find(|(t, _)| t.info.name == n).unwrap().0;
    let (wte, head) = (find("transformer.wte.weight"), find("lm_head.weight"));
    assert_eq!(wte.data_offset, head.data_offset);
    assert_eq!(wte.storage_nbytes, head.storage_nbytes);
}

#[test]
fn views_offsets_strides_and_dtypes() {
    let path = fixture("layouts.pt");
    let got = read_one("layouts.pt");
    check_against_expected(&got, &fixture("layouts.pt.expected.safetensors"));
    let file = std::fs::read(&path).unwrap();
    let find = |n: &str| &got.iter().find(|(t, _)| t.info.name == n).unwrap().0;
    let base = find("base");
    let rows = find("rows_1_3");
    assert_eq!(
        rows.data_offset, base.data_offset,
        "a view shares its base's storage"
    );
    assert_eq!(rows.storage_offset, 6);
    assert!(matches!(
        torch_tensor_bytes(&file, rows).unwrap(),
        Cow::Borrowed(_)
    ));
    let col = find("column_2");
    assert_eq!((col.storage_offset, col.strides.clone()), (2, vec![6]));
    let tr = find("transposed");
    assert_eq!(tr.strides, vec![1, 3]);
    assert!(matches!(
        torch_tensor_bytes(&file, tr).unwrap(),
        Cow::Owned(_)
    ));
    assert_eq!(find("expanded").strides, vec![0, 1]);
    assert_eq!(find("expanded").storage_nbytes, 3 * 8);
    assert_eq!(find("empty").info.shape, vec![0, 3]);
    assert!(torch_tensor_bytes(&file, find("empty")).unwrap().is_empty());
    let dtypes: Vec<DType> = ["scalar", "bytes", "mask", "longs", "permuted"]
        .iter()
        .map(|n| find(n).info.dtype)
        .collect();
    assert_eq!(
        dtypes,
        vec![DType::F64, DType::U8, DType::Bool, DType::I64, DType::BF16]
    );
}

#[test]
fn data_outside_the_file_is_an_error_not_a_panic() {
    let path = fixture("pythia_fp16.bin");
    let file = std::fs::read(&path).unwrap();
    let ts = read_torch_index(&path).unwrap();
    let last = ts.iter().max_by_key(|t| t.data_offset).unwrap();
    let e = torch_tensor_bytes(&file[..file.len() / 2], last).unwrap_err();
    assert!(matches!(e, TorchError::Data { .. }));
    assert!(e.to_string().contains(&last.info.name), "{e}");
}

fn err(path: &Path) -> String {
    let e = read_torch_index(path).unwrap_err().to_string();
    assert!(!e.contains('\n'), "multi-line error: {e}");
    assert!(
        e.starts_with(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn malicious_pickle_is_refused_without_running_it() {
    let path = fixture("malicious.bin");
    assert_eq!(
        err(&path),
        format!(
            "{}: refuses to load class posix.system (not a tensor or plain data)",
            path.display()
        )
    );
}

#[test]
fn bad_files() {
    let p = fixture("truncated.bin");
    let e = err(&p);
    assert!(
        e.starts_with(&format!(
            "{}: not a PyTorch zip checkpoint (truncated or corrupt zip:",
            p.display()
        )),
        "{e}"
    );
    let p = fixture("not_zip.bin");
    assert_eq!(
        err(&p),
        format!(
            "{}: not a PyTorch zip checkpoint (no zip signature at the start)",
            p.display()
        )
    );
    let p = fixture("legacy.bin");
    assert!(err(&p).starts_with(&format!(
        "{}: legacy (pre-1.6) torch.save format is not supported",
        p.display()
    )));
    let p = fixture("torchscript.pt");
    assert_eq!(
        err(&p),
        format!(
            "{}: a TorchScript archive (torch.jit.save), not a state dict: save model.state_dict() with torch.save",
            p.display()
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.bin");
    std::fs::write(&p, b"").unwrap();
    assert_eq!(
        err(&p),
        format!("{}: not a PyTorch zip checkpoint (empty file)", p.display())
    );
    let p = dir.path().join("missing.bin");
    assert!(err(&p).starts_with(&format!("{}: cannot read:", p.display())));
    // A safetensors file is not a torch zip either.
    let p = fixture("pythia_fp16.bin.expected.safetensors");
    assert!(err(&p).contains("not a PyTorch zip checkpoint"));
}

/// Copies the fp16 fixture with `from` replaced by `to` (same length) inside its data.pkl.
/// The zip layer stores entries raw, so the patched archive stays a valid zip.
fn patched(dir: &Path, from: &[u8], to: &[u8]) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(fixture("pythia_fp16.bin")).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern not in fixture");
    bytes[at..at + to.len()].copy_from_slice(to);
    let p = dir.join("patched.bin");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn inconsistent_archives() {
    let dir = tempfile::tempdir().unwrap();
    // embed_in.weight claims 33 rows of a 32-row storage.
    let p = patched(dir.path(), b"K\x20K\x10\x86", b"K\x21K\x10\x86");
    assert_eq!(
        err(&p),
        format!(
            "{}: tensor gpt_neox.embed_in.weight: needs 1056 bytes of its storage but the storage has 1024",
            p.display()
        )
    );
    // Its persistent id names a storage the archive does not have.
    let p = patched(dir.path(), b"X\x01\x00\x00\x000q", b"X\x01\x00\x00\x00zq");
    assert_eq!(
        err(&p),
        format!(
            "{}: tensor gpt_neox.embed_in.weight: storage pythia_fp16/data/z is missing from the archive",
            p.display()
        )
    );
    // A class outside the allow-list, spelled in place of OrderedDict.
    let p = patched(
        dir.path(),
        b"collections\nOrderedDict",
        b"subprocess\ncheck_output",
    );
    assert_eq!(
        err(&p),
        format!(
            "{}: refuses to load class subprocess.check_output (not a tensor or plain data)",
            p.display()
        )
    );
}

#[test]
fn shard_index_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pytorch_model.bin.index.json");
    let e = |body: &str| {
        std::fs::write(&p, body).unwrap();
        let e = read_bin_index(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(!e.contains('\n'));
        e
    };
    assert!(e("{").contains("bad shard index: not JSON"));
    assert!(e("{\"metadata\": {}}").contains("no \"weight_map\" object"));
    assert!(e("{\"weight_map\": {\"w\": \"../../etc/passwd\"}}").contains("is not a file name"));
    assert!(e("{\"weight_map\": {\"w\": \"/etc/passwd\"}}").contains("is not a file name"));
    assert!(e("{\"weight_map\": {\"w\": 3}}").contains("shard of w is not a string"));
    std::fs::write(&p, "{\"weight_map\": {\"a\": \"x.bin\", \"b\": \"y.bin\"}}").unwrap();
    let m = read_bin_index(&p).unwrap();
    assert_eq!(m["a"], dir.path().join("x.bin"));
    assert_eq!(m["b"], dir.path().join("y.bin"));
}

/// Every single-byte corruption of a real data.pkl either parses or fails with an error: no
/// panic, no runaway allocation. A sample of them also goes through the whole reader.
#[test]
fn corrupted_pickles_fail_cleanly() {
    use std::io::Read;
    let path = fixture("pythia_fp16.bin");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut pkl = Vec::new();
    zip.by_name("pythia_fp16/data.pkl")
        .unwrap()
        .read_to_end(&mut pkl)
        .unwrap();
    assert!(lawa::checkpoint::pickle::parse(&pkl).is_ok());
    for i in 0..pkl.len() {
        for v in [0x00, 0xff, pkl[i] ^ 0x01] {
            let mut m = pkl.clone();
            m[i] = v;
            let _ = lawa::checkpoint::pickle::parse(&m);
        }
        let _ = lawa::checkpoint::pickle::parse(&pkl[..i]);
    }

    let file = std::fs::read(&path).unwrap();
    let start = file.windows(pkl.len()).position(|w| w == pkl).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.bin");
    for i in (0..pkl.len()).step_by(31) {
        for v in [0x00, 0xff, pkl[i].wrapping_add(1)] {
            let mut m = file.clone();
            m[start + i] = v;
            std::fs::write(&p, &m).unwrap();
            match read_torch_index(&p) {
                Ok(ts) => {
                    for t in &ts {
                        // Whatever the index says must be readable or a clean error.
                        let _ = torch_tensor_bytes(&m, t);
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with(&p.display().to_string()) && !e.contains('\n'),
                        "{e}"
                    );
                }
            }
        }
    }
}

/// Python-like repr of a parsed value, to compare with what the generator pickled.
fn repr(pk: &lawa::checkpoint::pickle::Pickle, id: usize) -> String {
    use lawa::checkpoint::pickle::{Global, Object};
    let list = |ids: &[usize]| {
        ids.iter()
            .map(|&i| repr(pk, i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match pk.get(id) {
        Object::None => "None".into(),
        Object::Bool(b) => if *b { "True" } else { "False" }.into(),
        Object::Int(i) => i.to_string(),
        Object::BigInt => "<bigint>".into(),
        Object::Float(f) => format!("{f:?}"),
        Object::Str(s) => format!("{s:?}"),
        Object::Bytes(b) => format!("b{b:?}"),
        Object::Tuple(t) if t.len() == 1 => format!("({},)", repr(pk, t[0])),
        Object::Tuple(t) => format!("({})", list(t)),
        Object::List(l) => format!("[{}]", list(l)),
        Object::Set(s) => format!("{{{}}}", list(s)),
        Object::Dict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|&(k, v)| format!("{}: {}", repr(pk, k), repr(pk, v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Object::Global(Global::TorchDType) => "<torch dtype>".into(),
        other => format!("<{}>", other.kind()),
    }
}

#[test]
fn plain_data_at_every_protocol() {
    // The dict gen_torch.py pickles (sets and Size print as tuples/sets of their items).
    let want = concat!(
        r#"{"int": -5, "big": <bigint>, "float": 0.1, "text": "héllo", "bytes": b[0, 255, 97, 98], "#,
        r#""tuple": (1, (2, None), True, False), "set": {3}, "frozen": {4}, "size": (2, 3), "#,
        r#""device": "cuda:1", "dtype": <torch dtype>, "list": [1.5, "x", [], {}], "#,
        r#""np": [1.5, 0.25, -3, 200, True]}"#
    );
    for proto in 0..6 {
        let bytes = std::fs::read(fixture(&format!("plain_data_p{proto}.pkl"))).unwrap();
        let pk = lawa::checkpoint::pickle::parse(&bytes).unwrap();
        assert_eq!(repr(&pk, pk.root()), want, "protocol {proto}");
    }
}

/// Rewrites the fp16 fixture's entries into a new zip: another top folder, zip64 headers,
/// unaligned data. The reader must find everything from the zip directory alone.
#[test]
fn rezipped_archive_zip64_other_folder() {
    use std::io::{Read, Write};
    let src = fixture("pythia_fp16.bin");
    let mut zin = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("other.bin");
    let mut zout = zip::ZipWriter::new(std::fs::File::create(&dst).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    zout.start_file("readme.txt", opts).unwrap();
    zout.write_all(b"odd").unwrap();
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().replacen("pythia_fp16/", "some/deeper_name/", 1);
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        zout.start_file(name, opts).unwrap();
        zout.write_all(&buf).unwrap();
    }
    zout.finish().unwrap();
    let got: Vec<_> = read_torch_index(&dst)
        .unwrap()
        .into_iter()
        .map(|t| (t, dst.clone()))
        .collect();
    assert!(got.iter().any(|(t, _)| t.data_offset % 64 != 0));
    check_against_expected(&got, &fixture("pythia_fp16.bin.expected.safetensors"));
}

#[test]
fn compressed_entries_are_refused() {
    // Mark every entry deflated in the central directory (the data itself is untouched).
    let mut bytes = std::fs::read(fixture("pythia_fp16.bin")).unwrap();
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let h = at + i;
        bytes[h + 10] = 8;
        at = h + 4;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deflated.bin");
    std::fs::write(&p, &bytes).unwrap();
    let e = err(&p);
    assert!(
        e.contains("is compressed or encrypted (torch.save stores entries uncompressed)"),
        "{e}"
    );
}
