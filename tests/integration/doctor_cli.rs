//! `lawa doctor`: the compute-path self-check. Here (no GPU) it checks the CPU implementations
//! of the fused algorithms against the unfused ops, and a model on the CPU in f32/f16/bf16.

use std::process::Command;

fn doctor(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(crate::support::LAWA)
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let (ok, out, err) = doctor(args, env);
    assert!(ok, "{out}\n{err}");
    serde_json::from_str(&out).unwrap()
}

fn names(r: &serde_json::Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kernel_checks_cover_every_fused_op_and_pass_on_the_cpu() {
    let r = report(&["--device", "cpu", "--json"], &[]);
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["fused_enabled"], true);
    let names = names(&r);
    for hs in [64, 80, 128, 256] {
        for dt in ["F16", "BF16"] {
            assert!(
                names.contains(&format!("attention hs {hs} {dt}")),
                "{names:?}"
            );
        }
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("weighted sum"))
            .count(),
        3
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("token NLL")).count(),
        3
    );
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["pass"], true, "{c}");
        assert!(c["diff"].as_f64().unwrap() <= c["tolerance"].as_f64().unwrap());
    }
    let r = report(&["--device", "cpu", "--json"], &[("LAWA_FUSED", "0")]);
    assert_eq!(r["fused_enabled"], false);
}

#[test]
fn model_checks_compare_every_dtype_with_the_cpu_in_f32() {
    let model = crate::support::fixture("gpt_neox/parallel");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("ids.u32");
    let ids: Vec<u8> = (0..600u32)
        .flat_map(|i| ((i * 37 + 11) % 100).to_le_bytes())
        .collect();
    std::fs::write(&tokens, ids).unwrap();
    let args = [
        "--device",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        tokens.to_str().unwrap(),
    ];
    let r = report(&args, &[]);
    let checks = r["checks"].as_array().unwrap();
    let by_name = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    // The same device and dtype as the reference: identical.
    assert_eq!(by_name("model logits F32")["diff"], 0.0);
    assert_eq!(by_name("eval mean NLL F32")["diff"], 0.0);
    for n in ["model logits F16", "model logits BF16"] {
        let d = by_name(n)["diff"].as_f64().unwrap();
        assert!(d > 0.0 && by_name(n)["pass"] == true, "{n}: {d}");
    }

    // A model without eval data is refused in one line.
    let (ok, _, err) = doctor(
        &["--device", "cpu", "--model", model.to_str().unwrap()],
        &[],
    );
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        "error: --model needs --text FILE or --tokens FILE"
    );
}
