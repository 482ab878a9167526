//! [`ProviderHttp`]: the HTTP client every call to the identity provider goes through. It reads at
//! most [`MAX_PROVIDER_RESPONSE`] bytes of an answer, so a provider (or whoever answers in its
//! name) cannot make the proxy buffer an endless discovery document, JWKS or token response. It
//! follows no redirects (a redirect could point the proxy anywhere) and gives up after a timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::reqwest;
use openidconnect::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};

/// The largest answer read from the provider. Discovery documents and JWKS of the large hosted
/// providers are a few tens of KiB; 1 MiB leaves room for any real one.
pub const MAX_PROVIDER_RESPONSE: usize = 1024 * 1024;

/// Timeout of every call to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a GET to the provider brought no body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// No answer (refused, unresolved, timed out, cut) or a server error (5xx): asking again
    /// later may work.
    #[error("{0}")]
    Unavailable(String),
    /// An answer that asking again will not change (a 4xx, a body over the size cap).
    #[error("{0}")]
    Refused(String),
}

/// The provider's client: no redirects, a timeout, a size cap on what it reads.
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    max_body: usize,
}

impl ProviderHttp {
    /// The client used for every provider call.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            // Following redirects from the provider would let it point us anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .expect("a reqwest client with rustls builds");
        ProviderHttp {
            client,
            max_body: MAX_PROVIDER_RESPONSE,
        }
    }

    /// The underlying client, for requests whose answer is not read (token revocation).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GETs `url` and returns its body when the status is a success.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| FetchError::Unavailable(with_causes(&err)))?;
        let status = response.status();
        // A server error or a rate limit may pass; anything else will not by asking again.
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::Unavailable(format!("{url} answered {status}")));
        }
        if !status.is_success() {
            return Err(FetchError::Refused(format!("{url} answered {status}")));
        }
        read_capped(response, self.max_body).await
    }
}

/// An error with what caused it (`reqwest` says "error sending request" and keeps the reason, such
/// as "Connection refused", in its sources).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        cause = next.source();
    }
    text
}

/// The body of `response`, refused as soon as it is larger than `max` bytes (announced or read).
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    let url = response.url().clone();
    let too_large = || {
        FetchError::Refused(format!(
            "the answer from {url} is larger than {max} bytes; refused (a provider's answers are small)"
        ))
    };
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| FetchError::Unavailable(with_causes(&err)))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self
                .client
                .execute(request.try_into().map_err(Box::new)?)
                .await
                .map_err(Box::new)?;
            let mut builder = http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_capped(response, self.max_body)
                .await
                .map_err(|err| HttpClientError::Other(err.to_string()))?;
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}
