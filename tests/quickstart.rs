//! The README's first command: `tlsward quickstart` must serve mutual TLS on
//! localhost and every curl line it prints must behave as it says.

mod common;

#[test]
fn quickstart_curl_lines_behave_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (https, http, admin) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .args(["--log-level", "warn", "quickstart"])
        .arg(dir.path())
        .args(["--self-test", "--https-port", &https.to_string()])
        .args([
            "--http-port",
            &http.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .output()
        .expect("run tlsward quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("\nok   curl").count(), 6, "{stdout}");
    assert!(stdout.contains(&format!("https://localhost:{https}/")));
    for f in [
        "ca.crt",
        "client.crt",
        "client.key",
        "config/quickstart.yaml",
    ] {
        assert!(dir.path().join(f).exists(), "{f} was not written");
    }
}
