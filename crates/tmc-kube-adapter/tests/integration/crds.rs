//! The checked-in CRDs in `deploy/crds/` match the Rust types.

use std::path::PathBuf;

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    let generated = tmc_kube_adapter::crdgen::render().unwrap_or_else(|e| panic!("{e}"));
    let mut stale = Vec::new();
    for (name, yaml) in &generated {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if &on_disk == yaml => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    let mut expected: Vec<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
    expected.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    on_disk.sort();
    for extra in on_disk.iter().filter(|f| f.ends_with(".yaml") && !expected.contains(&f.as_str())) {
        stale.push(format!("{} is not generated any more", dir.join(extra).display()));
    }
    assert!(
        stale.is_empty(),
        "deploy/crds is stale:\n  {}\nregenerate with: cargo run -p tmc-kube-adapter --bin tmc-controller -- crdgen",
        stale.join("\n  ")
    );
}

#[test]
fn the_crds_parse_back_and_declare_the_status_subresource() {
    for (name, yaml) in tmc_kube_adapter::crdgen::render().unwrap_or_else(|e| panic!("{e}")) {
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name}: no status subresource");
        assert!(v.additional_printer_columns.as_ref().is_some_and(|c| c.iter().any(|c| c.name == "Age")), "{name}");
    }
}
