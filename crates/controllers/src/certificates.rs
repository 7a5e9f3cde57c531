//! What the CertificateSigningRequest controllers share, as upstream's
//! `pkg/apis/certificates/helpers.go` and `pkg/controller/certificates`: the signer names,
//! a request's subject and subject alternative names read from its PEM, whether it is
//! decided, and upstream's checks of what a kubelet may ask for.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};

/// Client certificates of node agents (`system:node:<name>` in `system:nodes`).
pub(crate) const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Serving certificates of node agents' HTTPS endpoints.
pub(crate) const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Client certificates for the API server, for anyone.
pub(crate) const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// The group of node agents.
pub(crate) const NODES: &str = "system:nodes";
/// The prefix of a node agent's user name.
pub(crate) const NODE_PREFIX: &str = "system:node:";

/// What a certificate request (PKCS #10) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    /// The subject's common name (the first, if several).
    pub(crate) common_name: String,
    /// The subject's organizations, in order.
    pub(crate) organizations: Vec<String>,
    /// How many attributes the subject has in all.
    pub(crate) subject_attributes: usize,
    /// DNS subject alternative names.
    pub(crate) dns_names: Vec<String>,
    /// IP subject alternative names.
    pub(crate) ip_addresses: Vec<IpAddr>,
    /// Email subject alternative names.
    pub(crate) emails: Vec<String>,
    /// URI subject alternative names.
    pub(crate) uris: Vec<String>,
}

/// Reads a PEM `CERTIFICATE REQUEST` (upstream's `ParseCSR`).
pub(crate) fn parse(pem: &[u8]) -> Result<Request, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    let wrong = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| wrong())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(wrong());
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("parsing the certificate request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str()
            .map(str::to_string)
            .map_err(|e| format!("a subject attribute is not a string: {e}"))
    };
    let mut req = Request {
        common_name: match subject.iter_common_name().next() {
            Some(cn) => text(cn)?,
            None => String::new(),
        },
        organizations: subject
            .iter_organization()
            .map(text)
            .collect::<Result<_, _>>()?,
        subject_attributes: subject.iter_attributes().count(),
        ..Request::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(n) => req.dns_names.push(n.to_string()),
                GeneralName::RFC822Name(n) => req.emails.push(n.to_string()),
                GeneralName::URI(n) => req.uris.push(n.to_string()),
                GeneralName::IPAddress(octets) => {
                    let ip = match octets.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*octets).expect("4 octets")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*octets).expect("16 octets")),
                        n => return Err(format!("an IP subjectAltName of {n} octets")),
                    };
                    req.ip_addresses.push(ip);
                }
                _ => {}
            }
        }
    }
    Ok(req)
}

/// The request's usages (`spec.usages`).
pub(crate) fn usages(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.spec.usages.clone().unwrap_or_default()
}

/// The request's conditions.
pub(crate) fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// Whether the request has a condition of type `ty` (upstream looks at the type alone: the
/// API allows only `True` for Approved, Denied and Failed).
pub(crate) fn has_condition(csr: &CertificateSigningRequest, ty: &str) -> bool {
    conditions(csr).iter().any(|c| c.type_ == ty)
}

/// Whether a certificate has been issued.
pub(crate) fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// A condition, as the controllers add them (the API server stamps the times).
pub(crate) fn condition(
    ty: &str,
    reason: &str,
    message: &str,
) -> CertificateSigningRequestCondition {
    CertificateSigningRequestCondition {
        type_: ty.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

fn set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

/// Whether `usages` are exactly `required`, or `required` without key encipherment (which
/// keys other than RSA have no use for).
fn usages_match(usages: &[String], required: &[&str]) -> Result<(), String> {
    let have = set(usages);
    let all: BTreeSet<&str> = required.iter().copied().collect();
    let mut no_rsa = all.clone();
    no_rsa.remove("key encipherment");
    if have == all || have == no_rsa {
        return Ok(());
    }
    Err(format!(
        "usages did not match [{}]",
        all.into_iter().collect::<Vec<_>>().join(" ")
    ))
}

fn only_system_nodes(req: &Request) -> Result<(), String> {
    if req.organizations != [NODES] {
        return Err("subject organization is not system:nodes".into());
    }
    Ok(())
}

fn node_common_name(req: &Request) -> Result<(), String> {
    if !req.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// Upstream's `ValidateKubeletClientCSR`: O exactly `system:nodes`, no subject alternative
/// names, CN `system:node:*`, usages digital signature and client auth (key encipherment
/// optional).
pub(crate) fn validate_kubelet_client(req: &Request, usages: &[String]) -> Result<(), String> {
    only_system_nodes(req)?;
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    node_common_name(req)?;
    usages_match(
        usages,
        &["client auth", "digital signature", "key encipherment"],
    )
}

/// Upstream's `ValidateKubeletServingCSR`: O exactly `system:nodes`, at least one DNS or IP
/// subject alternative name and no others, usages digital signature and server auth (key
/// encipherment optional), CN `system:node:*`.
pub(crate) fn validate_kubelet_serving(req: &Request, usages: &[String]) -> Result<(), String> {
    only_system_nodes(req)?;
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    usages_match(
        usages,
        &["digital signature", "key encipherment", "server auth"],
    )?;
    node_common_name(req)
}

/// Upstream's `validAPIServerClientUsages`: client auth, and digital signature or key
/// encipherment besides at most.
pub(crate) fn validate_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    //! CertificateSigningRequests made with rcgen, for the controllers' tests.

    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequest, CertificateSigningRequestSpec,
    };
    use kube::api::ObjectMeta;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    /// A PEM request for CN `cn`, organizations `orgs` and subject alternative names `sans`
    /// (IP addresses where they parse as one).
    pub(crate) fn request_pem(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().unwrap()),
            })
            .collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    /// Made by openssl (rcgen keeps one value per attribute type): CN alice, O dev, O ops.
    pub(crate) const TWO_ORGS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHmMIGOAgEAMCwxDjAMBgNVBAMMBWFsaWNlMQwwCgYDVQQKDANkZXYxDDAKBgNV
BAoMA29wczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPlOSEtacbKIZ6pACGwn
sQeriHXxBvbN+euU/f8TWzrFnMOy6947h9CxzPt3XD4Liizh5K/PIBvRBxDiUnLe
nXygADAKBggqhkjOPQQDAgNHADBEAiBSA9tHfMhG6BEA1bUU0YYjd/7+DRQFYNEu
28oX6JZDvgIgdvCTAfsiJttUohBBl25CtoQFjfmeA+pwnQrDwx5TZYQ=
-----END CERTIFICATE REQUEST-----
";

    /// Made by openssl: CN system:node:a, O system:nodes, O system:masters.
    pub(crate) const NODE_AND_MASTERS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBBDCBqgIBADBIMRYwFAYDVQQDDA1zeXN0ZW06bm9kZTphMRUwEwYDVQQKDAxz
eXN0ZW06bm9kZXMxFzAVBgNVBAoMDnN5c3RlbTptYXN0ZXJzMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEgyCIt6rbO2ZBAfTVkSltB/hwu1R+BakVImkM3QuTAu0+
knTB/ClNrhEnDkToJ9c0bpwHOKrys3g+Q+9B03QDDaAAMAoGCCqGSM49BAMCA0kA
MEYCIQCQptBsy7gejPv3A8oa3ORUYAPjsJqP4rHFAMSrHNJJWgIhAPgLpV/HJMqF
ql+A0lAVaObMqlE7QljoE0irV6wQCNqV
-----END CERTIFICATE REQUEST-----
";

    /// A request object as the API server stores it: `user` in `groups` asked `signer` for
    /// `pem` with `usages`.
    pub(crate) fn csr(
        pem: &str,
        signer: &str,
        usages: &[&str],
        user: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some("csr-1".into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.as_bytes().to_vec()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(user.into()),
                groups: Some(
                    groups
                        .iter()
                        .map(|g| g.to_string())
                        .chain(["system:authenticated".to_string()])
                        .collect(),
                ),
                ..Default::default()
            },
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::request_pem;
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_are_read_from_pem() {
        let pem = request_pem(
            "system:node:n1",
            &["system:nodes"],
            &["n1", "10.0.0.1", "fd00::1"],
        );
        let req = parse(pem.as_bytes()).unwrap();
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert_eq!(req.subject_attributes, 2);
        assert_eq!(req.dns_names, ["n1"]);
        assert_eq!(
            req.ip_addresses,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        let two = parse(super::testing::TWO_ORGS.as_bytes()).unwrap();
        assert_eq!(two.organizations, ["dev", "ops"]);
        assert_eq!(two.subject_attributes, 3);
        let both = parse(super::testing::NODE_AND_MASTERS.as_bytes()).unwrap();
        assert_eq!(
            validate_kubelet_client(&both, &strings(&["digital signature", "client auth"]))
                .unwrap_err(),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            parse(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn kubelet_requests_are_checked_like_upstream() {
        let client = |cn: &str, orgs: &[&str], sans: &[&str], usages: &[&str]| {
            let req = parse(request_pem(cn, orgs, sans).as_bytes()).unwrap();
            validate_kubelet_client(&req, &strings(usages))
        };
        let ok = ["digital signature", "client auth"];
        assert_eq!(client("system:node:a", &[NODES], &[], &ok), Ok(()));
        assert_eq!(
            client(
                "system:node:a",
                &[NODES],
                &[],
                &["key encipherment", "digital signature", "client auth"]
            ),
            Ok(())
        );
        assert_eq!(
            client("system:node:a", &["system:masters"], &[], &ok).unwrap_err(),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            client("system:node:a", &[], &[], &ok).unwrap_err(),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            client("system:node:a", &[NODES], &["a"], &ok).unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
        assert_eq!(
            client("system:node:a", &[NODES], &["10.0.0.1"], &ok).unwrap_err(),
            "IP subjectAltNames are not allowed"
        );
        assert_eq!(
            client("alice", &[NODES], &[], &ok).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        assert_eq!(
            client("system:node:a", &[NODES], &[], &["client auth"]).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        assert_eq!(
            client(
                "system:node:a",
                &[NODES],
                &[],
                &["digital signature", "client auth", "server auth"]
            )
            .unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );

        let serving = |cn: &str, sans: &[&str], usages: &[&str]| {
            let req = parse(request_pem(cn, &[NODES], sans).as_bytes()).unwrap();
            validate_kubelet_serving(&req, &strings(usages))
        };
        let ok = ["digital signature", "key encipherment", "server auth"];
        assert_eq!(serving("system:node:a", &["a", "10.0.0.1"], &ok), Ok(()));
        assert_eq!(
            serving(
                "system:node:a",
                &["10.0.0.1"],
                &["digital signature", "server auth"]
            ),
            Ok(())
        );
        assert_eq!(
            serving("system:node:a", &[], &ok).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        assert_eq!(
            serving("system:node:a", &["a"], &["server auth"]).unwrap_err(),
            "usages did not match [digital signature key encipherment server auth]"
        );
        assert_eq!(
            serving("a", &["a"], &ok).unwrap_err(),
            "subject common name does not begin with system:node:"
        );

        assert_eq!(
            validate_client_usages(&strings(&["digital signature", "client auth"])),
            Ok(())
        );
        assert_eq!(
            validate_client_usages(&strings(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
        assert_eq!(
            validate_client_usages(&strings(&["client auth", "server auth"])).unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
    }
}
