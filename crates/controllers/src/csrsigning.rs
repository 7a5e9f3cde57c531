//! The CSR signer (`certificatesigningrequest-signing-controller`, upstream's `csrsigning`,
//! `pkg/controller/certificates/signer`): signs approved requests of the built-in signers
//! `kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving` and
//! `kubernetes.io/kube-apiserver-client` with the cluster CA
//! (`--cluster-signing-cert-file`, `--cluster-signing-key-file`), into `status.certificate`
//! (PEM) through the `status` subresource.
//!
//! The certificate takes its subject and subject alternative names from the request and its
//! key usages from `spec.usages`; it is valid from five minutes ago (clock skew) for a year,
//! or for `spec.expirationSeconds` when shorter (ten minutes at least), never past the CA. A
//! request its signer does not accept (a kubelet client request that is not a kubelet's,
//! say) gets a `Failed` condition with reason `SignerValidationFailure`, as upstream's.
//! Without the CA's key the controller does not run.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestStatus,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::certificates as certs;
use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name.
const NAME: &str = "certificatesigningrequest-signing-controller";

/// The shortest validity given (twice the clock skew allowed, as upstream's).
const MIN_TTL_SECONDS: i64 = 600;
/// How far back a certificate's validity starts, for clocks behind the signer's.
const BACKDATE_SECONDS: i64 = 300;

/// The cluster CA, ready to sign.
pub(crate) struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// When the CA's own certificate expires (Unix seconds).
    not_after: i64,
    /// The longest validity given, in seconds (`--cluster-signing-duration`).
    ttl: i64,
}

impl Authority {
    /// The CA from its certificate and key (PEM), giving certificates at most `ttl` seconds.
    pub(crate) fn new(cert: &str, key: &str, ttl: i64) -> Result<Authority> {
        let key = KeyPair::from_pem(key).map_err(|e| {
            runtime::Error::Options(format!("reading the cluster signing key: {e}"))
        })?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).map_err(|e| {
            runtime::Error::Options(format!("reading the cluster signing certificate: {e}"))
        })?;
        let not_after = pem
            .parse_x509()
            .map_err(|e| {
                runtime::Error::Options(format!("reading the cluster signing certificate: {e}"))
            })?
            .validity()
            .not_after
            .timestamp();
        let issuer = Issuer::from_ca_cert_pem(cert, key).map_err(|e| {
            runtime::Error::Options(format!("reading the cluster signing certificate: {e}"))
        })?;
        Ok(Authority {
            issuer,
            not_after,
            ttl,
        })
    }

    /// Signs `pem` for `usages`, valid from `now` for `expiration_seconds` (or the default):
    /// the certificate as PEM.
    pub(crate) fn sign(
        &self,
        pem: &str,
        usages: &[String],
        expiration_seconds: Option<i32>,
        now: i64,
    ) -> Result<String, String> {
        let mut req = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| format!("unable to parse csr: {e}"))?;
        let (key_usages, extended) = key_usages(usages)?;
        let ttl = match expiration_seconds.map(i64::from) {
            None => self.ttl,
            Some(s) => s.max(MIN_TTL_SECONDS).min(self.ttl),
        };
        // rcgen's validity is the `time` crate's; x509-parser, which carries it, converts.
        let at = |secs: i64| {
            x509_parser::time::ASN1Time::from_timestamp(secs)
                .map(|t| t.to_datetime())
                .map_err(|e| format!("time {secs}: {e}"))
        };
        let p = &mut req.params;
        p.not_before = at(now - BACKDATE_SECONDS)?;
        p.not_after = at((now + ttl).min(self.not_after))?;
        p.serial_number = Some(
            serial()
                .map_err(|e| format!("a serial number: {e}"))?
                .into(),
        );
        p.key_usages = key_usages;
        p.extended_key_usages = extended;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.name_constraints = None;
        p.crl_distribution_points.clear();
        p.custom_extensions.clear();
        let cert = req
            .signed_by(&self.issuer)
            .map_err(|e| format!("signing: {e}"))?;
        Ok(cert.pem())
    }
}

/// 16 random bytes, a positive serial number (upstream uses 128 random bits).
fn serial() -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(bytes)
}

/// Key usages and extended key usages for `usages` (upstream's `keyUsagesFromStrings`).
fn key_usages(
    usages: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), String> {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    let (mut ku, mut eku, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for u in usages {
        let k = match u.as_str() {
            "signing" | "digital signature" => Some(K::DigitalSignature),
            "content commitment" => Some(K::ContentCommitment),
            "key encipherment" => Some(K::KeyEncipherment),
            "key agreement" => Some(K::KeyAgreement),
            "data encipherment" => Some(K::DataEncipherment),
            "cert sign" => Some(K::KeyCertSign),
            "crl sign" => Some(K::CrlSign),
            "encipher only" => Some(K::EncipherOnly),
            "decipher only" => Some(K::DecipherOnly),
            _ => None,
        };
        let e = match u.as_str() {
            "any" => Some(E::Any),
            "server auth" => Some(E::ServerAuth),
            "client auth" => Some(E::ClientAuth),
            "code signing" => Some(E::CodeSigning),
            "email protection" | "s/mime" => Some(E::EmailProtection),
            "ipsec end system" => Some(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
            "ipsec tunnel" => Some(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
            "ipsec user" => Some(E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
            "timestamping" => Some(E::TimeStamping),
            "ocsp signing" => Some(E::OcspSigning),
            "microsoft sgc" => Some(E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
            "netscape sgc" => Some(E::Other(vec![2, 16, 840, 1, 113_730, 4, 1])),
            _ => None,
        };
        match (k, e) {
            (Some(k), _) if !ku.contains(&k) => ku.push(k),
            (None, Some(e)) if !eku.contains(&e) => eku.push(e),
            (None, None) => unknown.push(format!("{u:?}")),
            _ => {}
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "unrecognized usage values: [{}]",
            unknown.join(" ")
        ));
    }
    Ok((ku, eku))
}

/// Whether the signer of `csr` accepts it: `Ok(false)` for signers this controller does not
/// serve, an error (the `Failed` condition's message) for requests it refuses.
fn accepts(csr: &CertificateSigningRequest) -> Result<bool, String> {
    let usages = certs::usages(csr);
    let signer = csr.spec.signer_name.as_str();
    if ![
        certs::KUBELET_CLIENT_SIGNER,
        certs::KUBELET_SERVING_SIGNER,
        certs::CLIENT_SIGNER,
    ]
    .contains(&signer)
    {
        return Ok(false);
    }
    let req = certs::parse(&csr.spec.request.0)?;
    match signer {
        certs::KUBELET_CLIENT_SIGNER => certs::validate_kubelet_client(&req, &usages)?,
        certs::KUBELET_SERVING_SIGNER => certs::validate_kubelet_serving(&req, &usages)?,
        _ => certs::validate_client_usages(&usages)?,
    }
    // rcgen keeps one value per attribute type: a subject naming, say, two organizations
    // could not be copied whole into the certificate, so it is refused rather than cut.
    let pem = String::from_utf8_lossy(&csr.spec.request.0);
    let parsed = CertificateSigningRequestParams::from_pem(&pem)
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    if parsed.params.distinguished_name.iter().count() != req.subject_attributes {
        return Err(
            "subjects with an attribute type given more than once are not supported".into(),
        );
    }
    Ok(true)
}

struct Ctx {
    client: kube::Client,
    authority: Authority,
}

/// Starts the signer; without the cluster CA's key it logs why and does nothing.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let Some((cert, key)) = &shared.options.cluster_signing else {
        tracing::info!(
            "{NAME}: no cluster signing certificate and key (--cluster-signing-cert-file, \
             --cluster-signing-key-file): CertificateSigningRequests are not signed"
        );
        return futures::future::ready(()).boxed();
    };
    let ttl = i64::try_from(shared.options.cluster_signing_duration.as_secs()).unwrap_or(i64::MAX);
    let authority = match Authority::new(cert, key, ttl) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{NAME}: {e:#}; CertificateSigningRequests are not signed");
            return futures::future::ready(()).boxed();
        }
    };
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        authority,
    });
    let controller = Controller::for_stream(
        informers.subscribe::<CertificateSigningRequest>(),
        informers.store::<CertificateSigningRequest>(),
    );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Nothing: not approved, denied, failed, issued, or another signer's.
    Skip,
    /// Refused: the `Failed` condition's message.
    Fail(String),
    /// Signed: the certificate, PEM.
    Issue(String),
}

fn outcome(csr: &CertificateSigningRequest, authority: &Authority, now: i64) -> Outcome {
    if !certs::has_condition(csr, "Approved")
        || certs::has_condition(csr, "Denied")
        || certs::has_condition(csr, "Failed")
        || certs::issued(csr)
    {
        return Outcome::Skip;
    }
    match accepts(csr) {
        Ok(false) => return Outcome::Skip,
        Ok(true) => {}
        Err(e) => return Outcome::Fail(e),
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0);
    match authority.sign(&pem, &certs::usages(csr), csr.spec.expiration_seconds, now) {
        Ok(cert) => Outcome::Issue(cert),
        Err(e) => Outcome::Fail(e),
    }
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action> {
    let now = jiff::Timestamp::now().as_second();
    let mut next = (*csr).clone();
    let status = next
        .status
        .get_or_insert_with(CertificateSigningRequestStatus::default);
    match outcome(&csr, &ctx.authority, now) {
        Outcome::Skip => return Ok(Action::await_change()),
        Outcome::Fail(message) => {
            tracing::warn!("{NAME}: {} not signed: {message}", csr.name_any());
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(certs::condition(
                    "Failed",
                    "SignerValidationFailure",
                    &message,
                ));
        }
        Outcome::Issue(cert) => {
            status.certificate = Some(ByteString(cert.into_bytes()));
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.replace_status(&csr.name_any(), &PostParams::default(), &next)
        .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::testing::{TWO_ORGS, csr, request_pem};
    use crate::certificates::{CLIENT_SIGNER, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER};
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType};
    use x509_parser::prelude::*;

    /// The default `--cluster-signing-duration`, in seconds, as the options give it.
    const DEFAULT_TTL_SECONDS: i64 = 365 * 24 * 3600;

    #[test]
    fn the_default_ttl_is_a_year_as_upstreams() {
        let default = crate::Options::default().cluster_signing_duration;
        assert_eq!(default.as_secs(), DEFAULT_TTL_SECONDS as u64);
    }

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "rudder-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn approved(mut c: CertificateSigningRequest) -> CertificateSigningRequest {
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![certs::condition("Approved", "AutoApproved", "yes")]),
            certificate: None,
        });
        c
    }

    #[test]
    fn approved_requests_are_signed_with_their_subject_names_and_usages() {
        let (ca_cert, ca_key) = ca();
        let authority = Authority::new(&ca_cert, &ca_key, DEFAULT_TTL_SECONDS).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let pem = request_pem("system:node:a", &["system:nodes"], &["a", "10.0.0.7"]);
        let usages = ["digital signature", "key encipherment", "server auth"];
        let c = approved(csr(
            &pem,
            KUBELET_SERVING_SIGNER,
            &usages,
            "system:node:a",
            &["system:nodes"],
        ));
        let Outcome::Issue(cert) = outcome(&c, &authority, now) else {
            panic!("not issued: {:?}", outcome(&c, &authority, now));
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let x = block.parse_x509().unwrap();
        let subject = x.subject();
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "system:node:a"
        );
        assert_eq!(
            subject
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:nodes"
        );
        assert_eq!(
            x.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "rudder-ca"
        );
        let sans = &x
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(
            sans,
            &vec![
                GeneralName::DNSName("a"),
                GeneralName::IPAddress(&[10, 0, 0, 7])
            ]
        );
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
        // A year from five minutes ago.
        assert_eq!(x.validity().not_before.timestamp(), now - BACKDATE_SECONDS);
        assert_eq!(
            x.validity().not_after.timestamp(),
            now + DEFAULT_TTL_SECONDS
        );
        // Signed by the CA's key.
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_cert.as_bytes()).unwrap();
        let ca_x = ca_block.parse_x509().unwrap();
        x.verify_signature(Some(ca_x.public_key())).unwrap();

        // A client certificate for a shorter time: what the request asked, ten minutes at least.
        let pem = request_pem("system:node:a", &["system:nodes"], &[]);
        let mut c = approved(csr(
            &pem,
            KUBELET_CLIENT_SIGNER,
            &["digital signature", "client auth"],
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
        ));
        for (asked, valid) in [
            (3600, 3600),
            (60, MIN_TTL_SECONDS),
            (i32::MAX, DEFAULT_TTL_SECONDS),
        ] {
            c.spec.expiration_seconds = Some(asked);
            let Outcome::Issue(cert) = outcome(&c, &authority, now) else {
                panic!()
            };
            let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
            let x = block.parse_x509().unwrap();
            assert_eq!(
                x.validity().not_after.timestamp(),
                now + valid,
                "asked {asked}"
            );
            let eku = x.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
        }
        // Never past the CA's own expiry.
        let late = ca_x.validity().not_after.timestamp() - 100;
        let Outcome::Issue(cert) = outcome(&c, &authority, late) else {
            panic!()
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        assert_eq!(
            block.parse_x509().unwrap().validity().not_after,
            ca_x.validity().not_after
        );
    }

    #[test]
    fn only_approved_pending_requests_of_its_signers_are_signed() {
        let (ca_cert, ca_key) = ca();
        let authority = Authority::new(&ca_cert, &ca_key, DEFAULT_TTL_SECONDS).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let pem = request_pem("system:node:a", &["system:nodes"], &[]);
        let usages = ["digital signature", "client auth"];
        let pending = csr(
            &pem,
            KUBELET_CLIENT_SIGNER,
            &usages,
            "system:node:a",
            &["system:nodes"],
        );
        assert_eq!(outcome(&pending, &authority, now), Outcome::Skip);
        let mut denied = approved(pending.clone());
        denied
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(certs::condition("Denied", "No", "no"));
        assert_eq!(outcome(&denied, &authority, now), Outcome::Skip);
        let mut issued = approved(pending.clone());
        issued.status.as_mut().unwrap().certificate = Some(ByteString(b"x".to_vec()));
        assert_eq!(outcome(&issued, &authority, now), Outcome::Skip);
        let other = approved(csr(&pem, "example.com/signer", &usages, "bob", &[]));
        assert_eq!(outcome(&other, &authority, now), Outcome::Skip);

        // Refused by the signer: Failed, with upstream's reason.
        let alice = request_pem("alice", &["dev"], &[]);
        let wrong = approved(csr(&alice, KUBELET_CLIENT_SIGNER, &usages, "alice", &[]));
        assert_eq!(
            outcome(&wrong, &authority, now),
            Outcome::Fail("subject organization is not system:nodes".into())
        );
        let serving_client = approved(csr(
            &alice,
            CLIENT_SIGNER,
            &["server auth", "client auth"],
            "alice",
            &[],
        ));
        assert_eq!(
            outcome(&serving_client, &authority, now),
            Outcome::Fail("invalid usage for client certificate: server auth".into())
        );
        // A subject that would lose an organization is refused, not cut.
        let two = approved(csr(TWO_ORGS, CLIENT_SIGNER, &usages, "alice", &[]));
        assert_eq!(
            outcome(&two, &authority, now),
            Outcome::Fail(
                "subjects with an attribute type given more than once are not supported".into()
            )
        );
        // Any client certificate for kube-apiserver-client.
        let fine = approved(csr(&alice, CLIENT_SIGNER, &usages, "alice", &[]));
        assert!(matches!(outcome(&fine, &authority, now), Outcome::Issue(_)));
        assert_eq!(
            key_usages(&["client auth".into(), "flying".into()]).unwrap_err(),
            "unrecognized usage values: [\"flying\"]"
        );
    }
}
