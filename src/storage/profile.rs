//! AWS shared profiles (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`), which
//! object_store does not read. kiln follows the AWS SDKs' order: keys in the
//! environment first, then the profile, then web identity, container and instance
//! credentials (object_store's chain). Only static keys are taken from a profile; a
//! profile that needs SSO, a role or a credential process is named in an error that
//! says how to export its keys.

use std::path::{Path, PathBuf};

use ini::Ini;

use crate::error::{Error, Result};

/// Static keys from a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// What kiln takes from a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// `None` when the environment already holds keys, or the profile holds none.
    pub credentials: Option<Keys>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Settings that make a profile's credentials something other than static keys.
const NOT_STATIC: [&str; 6] = [
    "role_arn",
    "source_profile",
    "sso_session",
    "sso_start_url",
    "credential_process",
    "web_identity_token_file",
];

/// The profile named by `AWS_PROFILE` (or `default`), from the process environment.
///
/// # Errors
/// [`Error::Plan`] when `AWS_PROFILE` names a profile that does not exist or whose
/// credentials are not static keys.
pub fn from_env() -> Result<Option<Profile>> {
    resolve(&|k| std::env::var(k).ok())
}

/// [`from_env`] with the environment passed in.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Profile>> {
    let explicit = env("AWS_PROFILE").filter(|p| !p.is_empty());
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let home = env("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let credentials = section(credentials_file.as_deref(), &name)?;
    let config_name = if name == "default" {
        name.clone()
    } else {
        format!("profile {name}")
    };
    let config = section(config_file.as_deref(), &config_name)?;
    if credentials.is_none() && config.is_none() {
        if explicit.is_some() {
            return Err(Error::Plan(format!(
                "AWS_PROFILE={name}, but no profile `{name}` is in {} or {}",
                shown(credentials_file.as_deref()),
                shown(config_file.as_deref())
            )));
        }
        return Ok(None);
    }
    let get = |key: &str| {
        credentials
            .as_ref()
            .and_then(|s| s.get(key))
            .or_else(|| config.as_ref().and_then(|s| s.get(key)))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Some({
            crate::secrets::register(&id);
            crate::secrets::register(&secret);
            if let Some(token) = get("aws_session_token") {
                crate::secrets::register(&token);
            }
            Keys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: get("aws_session_token"),
            }
        }),
        _ => None,
    };
    let env_has_keys = env("AWS_ACCESS_KEY_ID").is_some();
    if keys.is_none()
        && !env_has_keys
        && explicit.is_some()
        && let Some(kind) = NOT_STATIC.iter().find(|k| get(k).is_some())
    {
        return Err(Error::Plan(format!(
            "AWS profile `{name}` gets its credentials through `{kind}`, which kiln does not \
             run; export them first: eval \"$(aws configure export-credentials --profile \
             {name} --format env)\""
        )));
    }
    Ok(Some(Profile {
        name,
        credentials: if env_has_keys { None } else { keys },
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    }))
}

fn shown(p: Option<&Path>) -> String {
    p.map_or("(no HOME)".to_string(), |p| p.display().to_string())
}

/// The `[name]` section of an INI file; `None` if the file or the section is missing.
fn section(file: Option<&Path>, name: &str) -> Result<Option<ini::Properties>> {
    let Some(file) = file else { return Ok(None) };
    if !file.exists() {
        return Ok(None);
    }
    let ini = Ini::load_from_file(file).map_err(|e| {
        Error::Plan(format!(
            "cannot read the AWS profile file {}: {e}",
            file.display()
        ))
    })?;
    Ok(ini.section(Some(name)).cloned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_static_keys_region_and_endpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let aws = dir.path().join(".aws");
        std::fs::create_dir_all(&aws).expect("mkdir");
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n\
             [minio]\naws_access_key_id = AKIA2\naws_secret_access_key = s2\naws_session_token = t2\n",
        )
        .expect("write");
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n\n[profile minio]\nregion = us-east-1\n\
             endpoint_url = http://127.0.0.1:9000\n\n[profile sso]\nsso_session = corp\n",
        )
        .expect("write");
        let home = dir.path().to_str().expect("utf-8");
        let p = resolve(&env(&[("HOME", home)]))
            .expect("resolves")
            .expect("default profile");
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            p.credentials.map(|k| k.access_key_id).as_deref(),
            Some("AKIA1")
        );
        let p = resolve(&env(&[("HOME", home), ("AWS_PROFILE", "minio")]))
            .expect("resolves")
            .expect("minio");
        assert_eq!(p.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            p.credentials,
            Some(Keys {
                access_key_id: "AKIA2".into(),
                secret_access_key: "s2".into(),
                session_token: Some("t2".into())
            })
        );
        // Keys in the environment win over the profile's.
        let p = resolve(&env(&[("HOME", home), ("AWS_ACCESS_KEY_ID", "ENV")]))
            .expect("resolves")
            .expect("default");
        assert_eq!(p.credentials, None);
        let err =
            resolve(&env(&[("HOME", home), ("AWS_PROFILE", "sso")])).expect_err("sso is refused");
        assert!(err.to_string().contains("export-credentials"), "{err}");
        let err =
            resolve(&env(&[("HOME", home), ("AWS_PROFILE", "nope")])).expect_err("missing profile");
        assert!(err.to_string().contains("no profile `nope`"), "{err}");
    }

    #[test]
    fn no_files_no_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_str().expect("utf-8");
        assert_eq!(resolve(&env(&[("HOME", home)])).expect("ok"), None);
    }
}
