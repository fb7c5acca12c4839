//! The seed files (`.env`, `.db.env`, `.jwt.env`) and their conventional
//! variable names (`DATABASE_URL`, `REDIS_URL`, `JWT_SECRET`...).

use std::path::Path;

use config::Config;

use super::SettingsError;

/// The seed files' conventional names, mapped onto our settings. They rank
/// below `STREAMBOARD__...` variables, and process variables beat the files.
pub(super) fn seed_files(dir: &Path) -> Result<Config, SettingsError> {
    let mut vars = std::collections::HashMap::new();
    for name in [".env", ".db.env", ".jwt.env"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let entries = dotenvy::from_path_iter(&path).map_err(|e| SettingsError::Invalid {
            setting: "seed files",
            message: format!("{}: {e}", path.display()),
        })?;
        for entry in entries {
            let (key, value) = entry.map_err(|e| SettingsError::Invalid {
                setting: "seed files",
                message: format!("{}: {e}", path.display()),
            })?;
            vars.insert(key, value);
        }
    }
    for (key, value) in std::env::vars() {
        vars.insert(key, value);
    }
    let get = |key: &str| vars.get(key).filter(|v| !v.is_empty()).cloned();

    let mut builder = Config::builder();
    let postgres_url = get("DATABASE_URL")
        .or_else(|| get("POSTGRES_URL"))
        .or_else(|| {
            let db = get("POSTGRES_DB")?;
            let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
            let password = get("POSTGRES_PASSWORD")
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let host = get("POSTGRES_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = get("POSTGRES_PORT").unwrap_or_else(|| "5432".into());
            Some(format!("postgres://{user}{password}@{host}:{port}/{db}"))
        });
    let pairs = [
        ("redis.url", get("REDIS_URL")),
        ("postgres.url", postgres_url),
        ("auth.jwt_secret", get("JWT_SECRET")),
    ];
    for (setting, value) in pairs {
        if let Some(value) = value {
            builder = builder.set_override(setting, value)?;
        }
    }
    Ok(builder.build()?)
}
