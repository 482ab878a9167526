//! ID-token checks: which algorithms are accepted, clock skew on `exp`/`iat`, and the claims.
//!
//! Signature, `iss`, `aud`, `exp` and `nonce` are checked by `openidconnect`'s verifier; this
//! module configures it so that only the asymmetric algorithms the provider advertises are
//! accepted (never `none`, never HMAC: an HMAC "keyed with the public key" is then impossible), adds
//! the skew-bounded `iat` check and the `azp` check for a single audience, and decodes every claim
//! of the verified token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, Nonce, SignatureVerificationError};
use serde_json::{Map, Value};

const IAT_IN_FUTURE: &str = "issued in the future";

/// Why an ID token was refused. Messages and codes never contain token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenRejection {
    /// Signed with a key id the JWKS does not have (even after a refetch).
    #[error("signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `alg` is `none`, HMAC, or not advertised by the provider.
    #[error("signing algorithm not allowed")]
    DisallowedAlg,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain our client id, contains another audience, or `azp` names another
    /// client.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed (beyond the clock skew).
    #[error("expired")]
    Expired,
    /// `iat` is later than now plus the clock skew.
    #[error("issued in the future")]
    IssuedInFuture,
    /// `nonce` missing or not the one of this login.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// A refreshed ID token names another issuer or subject.
    #[error("refreshed token names another user")]
    SubjectChanged,
    /// Not a well-formed ID token.
    #[error("malformed token")]
    Malformed,
}

impl IdTokenRejection {
    /// A stable reason code for logs.
    pub fn reason_code(&self) -> &'static str {
        match self {
            IdTokenRejection::UnknownKey => "id_token_unknown_key",
            IdTokenRejection::BadSignature => "id_token_bad_signature",
            IdTokenRejection::DisallowedAlg => "id_token_disallowed_alg",
            IdTokenRejection::WrongIssuer => "id_token_wrong_issuer",
            IdTokenRejection::WrongAudience => "id_token_wrong_audience",
            IdTokenRejection::Expired => "id_token_expired",
            IdTokenRejection::IssuedInFuture => "id_token_iat_in_future",
            IdTokenRejection::NonceMismatch => "id_token_nonce_mismatch",
            IdTokenRejection::SubjectChanged => "id_token_subject_changed",
            IdTokenRejection::Malformed => "id_token_malformed",
        }
    }
}

/// The advertised algorithms we accept: asymmetric ones only.
pub fn asymmetric_algs(advertised: &[CoreJwsSigningAlgorithm]) -> Vec<CoreJwsSigningAlgorithm> {
    advertised
        .iter()
        .filter(|alg| {
            !matches!(
                alg,
                CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
                    | CoreJwsSigningAlgorithm::None
            )
        })
        .cloned()
        .collect()
}

/// Verifies `id_token` with the provider's `verifier` (its keys, issuer and our client id),
/// accepting only `allowed_algs` and `clock_skew` of clock difference, and returns all its claims.
/// `nonce` is `None` for refreshed tokens, which carry no nonce of ours.
pub fn id_token(
    verifier: CoreIdTokenVerifier<'_>,
    allowed_algs: &[CoreJwsSigningAlgorithm],
    clock_skew: std::time::Duration,
    id_token: &CoreIdToken,
    nonce: Option<&Nonce>,
) -> Result<Map<String, Value>, IdTokenRejection> {
    let skew = chrono::Duration::from_std(clock_skew).unwrap_or_default();
    let verifier = verifier
        .set_allowed_algs(allowed_algs.to_vec())
        // `exp` passes while exp > now - skew.
        .set_time_fn(move || Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat: DateTime<Utc>| {
            if iat > Utc::now() + skew {
                Err(IAT_IN_FUTURE.to_owned())
            } else {
                Ok(())
            }
        });
    let claims = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }
    .map_err(classify)?;
    // `openidconnect` checks `azp` only when `aud` has several values; OpenID Connect Core
    // 3.1.3.7 (5) has the client check it whenever it is present. The verified audience is our
    // client id alone (other audiences are refused), so `azp` must be in it.
    if let Some(azp) = claims.authorized_party()
        && !claims
            .audiences()
            .iter()
            .any(|audience| audience.as_str() == azp.as_str())
    {
        return Err(IdTokenRejection::WrongAudience);
    }
    decode_claims(&id_token.to_string())
}

fn classify(err: ClaimsVerificationError) -> IdTokenRejection {
    match err {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => IdTokenRejection::UnknownKey,
        ClaimsVerificationError::SignatureVerification(
            // `alg: none` arrives as "no signature".
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature,
        ) => IdTokenRejection::DisallowedAlg,
        ClaimsVerificationError::SignatureVerification(_) => IdTokenRejection::BadSignature,
        ClaimsVerificationError::Expired(message) if message == IAT_IN_FUTURE => {
            IdTokenRejection::IssuedInFuture
        }
        ClaimsVerificationError::Expired(_) => IdTokenRejection::Expired,
        ClaimsVerificationError::InvalidAudience(_) => IdTokenRejection::WrongAudience,
        ClaimsVerificationError::InvalidIssuer(_) => IdTokenRejection::WrongIssuer,
        ClaimsVerificationError::InvalidNonce(_) => IdTokenRejection::NonceMismatch,
        _ => IdTokenRejection::Malformed,
    }
}

/// The JSON claims of a compact JWT whose signature has been checked.
fn decode_claims(jwt: &str) -> Result<Map<String, Value>, IdTokenRejection> {
    let payload = jwt.split('.').nth(1).ok_or(IdTokenRejection::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| IdTokenRejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| IdTokenRejection::Malformed)
}
