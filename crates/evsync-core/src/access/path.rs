//! Which tenant a request is for: the original worker's URL rules.

/// Why a request path names no tenant, each with the original's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `404 Not found`: not an `/event-log` path.
    NotFound,
    /// `400 Tenant is required.`: `/event-log` without a tenant.
    TenantRequired,
    /// `400 Invalid tenant format.`
    InvalidTenant,
}

impl PathError {
    /// The HTTP status and plain-text body the original answers with.
    pub fn status_and_body(self) -> (u16, &'static str) {
        match self {
            PathError::NotFound => (404, "Not found"),
            PathError::TenantRequired => (400, "Tenant is required."),
            PathError::InvalidTenant => (400, "Invalid tenant format."),
        }
    }
}

/// Matches `^/event-log(?:/([^/]+))?/?$` on the raw (still percent-encoded)
/// path, as the original did on `URL.pathname`, and validates the tenant.
pub fn parse_path(path: &str) -> Result<&str, PathError> {
    let rest = path.strip_prefix("/event-log").ok_or(PathError::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return Err(PathError::TenantRequired);
    }
    let tenant = rest.strip_prefix('/').ok_or(PathError::NotFound)?;
    let tenant = tenant.strip_suffix('/').unwrap_or(tenant);
    if tenant.is_empty() || tenant.contains('/') {
        return Err(PathError::NotFound);
    }
    if !is_valid_tenant(tenant) {
        return Err(PathError::InvalidTenant);
    }
    Ok(tenant)
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
pub fn is_valid_tenant(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_original_regex() {
        assert_eq!(parse_path("/event-log/acme"), Ok("acme"));
        assert_eq!(parse_path("/event-log/acme/"), Ok("acme"));
        assert_eq!(parse_path("/event-log"), Err(PathError::TenantRequired));
        assert_eq!(parse_path("/event-log/"), Err(PathError::TenantRequired));
        assert_eq!(parse_path("/event-log//"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-logs/a"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-log/a/b"), Err(PathError::NotFound));
        assert_eq!(parse_path("/event-log/a//"), Err(PathError::NotFound));
        assert_eq!(parse_path("/"), Err(PathError::NotFound));
        assert_eq!(
            parse_path("/event-log/bad%2Ftenant"),
            Err(PathError::InvalidTenant)
        );
        assert_eq!(parse_path("/event-log/.a"), Err(PathError::InvalidTenant));
        assert_eq!(parse_path("/event-log/a.b_c-D9"), Ok("a.b_c-D9"));
    }

    #[test]
    fn tenant_length_limit() {
        assert!(is_valid_tenant(&"a".repeat(128)));
        assert!(!is_valid_tenant(&"a".repeat(129)));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("-a"));
        assert!(!is_valid_tenant("a b"));
        assert!(!is_valid_tenant("é"));
    }
}
