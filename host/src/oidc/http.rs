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
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        read_capped(response, self.max_body).await
    }
}

/// The body of `response`, refused as soon as it is larger than `max` bytes (announced or read).
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let url = response.url().clone();
    let too_large = || {
        format!(
            "the answer from {url} is larger than {max} bytes; refused (a provider's answers are small)"
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
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
                .map_err(HttpClientError::Other)?;
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}
