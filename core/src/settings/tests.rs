use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "streamboard-settings-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn built_in_defaults_load_in_dev() {
    let dir = temp_dir("defaults");
    let settings = Settings::load_from("dev", &dir, &dir).unwrap();
    assert_eq!(settings.server.addr, "127.0.0.1:8080");
    assert_eq!(settings.auth.token_ttl_days, 30);
    assert!(settings.redis_url().is_none());
}

#[test]
fn profiles_other_than_dev_need_a_long_jwt_secret() {
    let dir = temp_dir("prod");
    std::fs::write(dir.join("prod.toml"), "[auth]\njwt_secret = \"short\"\n").unwrap();
    let err = Settings::load_from("prod", &dir, &dir).unwrap_err();
    assert!(err.to_string().contains("auth.jwt_secret"), "{err}");
}

#[test]
fn a_bad_setting_is_named() {
    let dir = temp_dir("bad");
    std::fs::write(dir.join("dev.toml"), "[server]\naddr = \"nonsense\"\n").unwrap();
    let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
    assert!(err.to_string().contains("server.addr"), "{err}");

    std::fs::write(
        dir.join("dev.toml"),
        "[websocket]\nmax_connections = \"many\"\n",
    )
    .unwrap();
    let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
}

#[test]
fn cors_allows_nothing_by_default_and_takes_only_origins() {
    let dir = temp_dir("cors");
    let dev = Settings::load_from("dev", &dir, &dir).unwrap();
    assert!(dev.server.cors_origins.is_empty(), "built-in default");
    std::fs::write(
        dir.join("dev.toml"),
        "[server]\ncors_origins = [\"https://a.example\", \"http://localhost:3000\"]\n",
    )
    .unwrap();
    assert!(Settings::load_from("dev", &dir, &dir).is_ok());
    for bad in ["nonsense", "https://a.example/", "https://a.example/path"] {
        std::fs::write(
            dir.join("dev.toml"),
            format!("[server]\ncors_origins = [\"{bad}\"]\n"),
        )
        .unwrap();
        let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
        assert!(
            err.to_string().contains("server.cors_origins"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn webhook_leases_must_outlast_a_request() {
    let dir = temp_dir("webhooks");
    let defaults = Settings::load_from("dev", &dir, &dir).unwrap();
    // The built-in defaults are prod's: private targets refused.
    assert!(!defaults.webhooks.allow_private_targets);
    std::fs::write(
        dir.join("dev.toml"),
        "[webhooks]\ntimeout_ms = 20000\nlease_ms = 15000\n",
    )
    .unwrap();
    let err = Settings::load_from("dev", &dir, &dir).unwrap_err();
    assert!(err.to_string().contains("webhooks.lease_ms"), "{err}");
}

#[test]
fn seed_files_fill_urls_and_secret_and_never_print() {
    let dir = temp_dir("seeds");
    std::fs::write(
        dir.join(".db.env"),
        "POSTGRES_USER=app\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=boards\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".jwt.env"),
        "JWT_SECRET=a-very-long-secret-from-the-seed-files-123\n",
    )
    .unwrap();
    let settings = Settings::load_from("test", &dir, &dir).unwrap();
    let url = settings.postgres_url().unwrap();
    assert!(
        url.starts_with("postgres://app:pw@") && url.ends_with("/boards"),
        "{url}"
    );
    assert_eq!(
        settings.jwt_secret(),
        "a-very-long-secret-from-the-seed-files-123"
    );
    let printed = format!("{settings:?}");
    assert!(
        !printed.contains("a-very-long-secret") && !printed.contains(":pw@"),
        "{printed}"
    );
}
