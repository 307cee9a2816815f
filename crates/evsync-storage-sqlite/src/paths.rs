//! Where a tenant's file lives.

use std::path::{Path, PathBuf};

/// File extension of a tenant store. SQLite adds `-wal` and `-shm` beside it.
pub const EXTENSION: &str = "sqlite";

/// The file name of `tenant`'s store: the tenant name with every uppercase
/// ASCII letter `X` written as `+x`, then `.sqlite`.
///
/// Tenant names are case-sensitive (`Acme` and `acme` are two Durable
/// Objects in the original), but the default file systems of macOS and
/// Windows are not; escaping uppercase keeps two tenants from ever sharing a
/// file. `+` cannot occur in a tenant name
/// (`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`), so the mapping is one-to-one, and
/// because names start with an alphanumeric character none is `.` or `..`.
pub fn tenant_file_name(tenant: &str) -> String {
    let mut name = String::with_capacity(tenant.len() + 8);
    for c in tenant.chars() {
        if c.is_ascii_uppercase() {
            name.push('+');
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name.push('.');
    name.push_str(EXTENSION);
    name
}

/// The tenant whose store file is named `file_name` (the inverse of
/// [`tenant_file_name`]); `None` for any other file name.
pub fn tenant_from_file_name(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    let mut tenant = String::with_capacity(stem.len());
    let mut chars = stem.chars();
    while let Some(c) = chars.next() {
        match c {
            '+' => tenant.push(
                chars
                    .next()
                    .filter(char::is_ascii_lowercase)?
                    .to_ascii_uppercase(),
            ),
            c if c.is_ascii_uppercase() => return None,
            c => tenant.push(c),
        }
    }
    (tenant_file_name(&tenant) == file_name && !tenant.is_empty()).then_some(tenant)
}

/// The path of `tenant`'s store inside `tenants_dir`.
pub fn tenant_path(tenants_dir: &Path, tenant: &str) -> PathBuf {
    tenants_dir.join(tenant_file_name(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_escaped_so_names_never_collide() {
        assert_eq!(tenant_file_name("acme"), "acme.sqlite");
        assert_eq!(tenant_file_name("Acme"), "+acme.sqlite");
        assert_eq!(tenant_file_name("a.B-c_9"), "a.+b-c_9.sqlite");
        assert_ne!(tenant_file_name("AB"), tenant_file_name("ab"));
        assert_ne!(
            tenant_file_name("AB").to_lowercase(),
            tenant_file_name("ab").to_lowercase()
        );
        for tenant in ["acme", "Acme", "a.B-c_9", "X"] {
            assert_eq!(
                tenant_from_file_name(&tenant_file_name(tenant)).as_deref(),
                Some(tenant)
            );
        }
        for other in [
            "acme.sqlite-wal",
            "acme.sqlite-shm",
            "Acme.sqlite",
            "+.sqlite",
            ".sqlite",
            "acme.db",
            "+1.sqlite",
        ] {
            assert_eq!(tenant_from_file_name(other), None, "{other}");
        }
    }
}
