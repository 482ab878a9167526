//! Golden tests for config errors: every `tests/config/invalid/NAME.toml` sits beside `NAME.err`,
//! the exact text `portcullis check` prints for it. Set `UPDATE_GOLDEN=1` to rewrite the `.err`
//! files after an intended change (then review the diff). Every example config must load.

use std::path::{Path, PathBuf};

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn invalid_configs_print_exactly_their_golden_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/invalid");
    let configs = files_with_extension(&dir, "toml");
    assert!(
        configs.len() >= 5,
        "golden configs missing in {}",
        dir.display()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for config in configs {
        let err = portcullis::config::load(&config)
            .expect_err(&format!("{} must be refused", config.display()));
        // Paths are printed as given; make them relative to the golden folder.
        let text = format!("{err}\n").replace(&format!("{}/", dir.display()), "");
        let golden = config.with_extension("err");
        if update {
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| format!("<{} is missing>", golden.display()));
        if text != expected {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{text}",
                config.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_example_config_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        for config in files_with_extension(&dir, "toml") {
            if let Err(err) = portcullis::config::load(&config) {
                panic!("{err}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "not every example config was found in {}",
        examples.display()
    );
}

#[test]
fn omitted_keys_take_their_documented_defaults() {
    let config = portcullis::config::parse(
        "[[routes]]\nname = \"app\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n",
        Path::new("."),
    )
    .unwrap();
    let server = &config.server;
    assert_eq!(server.listen, ["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(server.admin_listen, None);
    assert!(server.trusted_proxies.is_empty());
    assert_eq!(server.drain_timeout, std::time::Duration::from_secs(30));
    assert_eq!(server.max_request_body, 10 * 1024 * 1024);
    assert!(!server.allow_encoded_slashes);
    assert_eq!(
        server.upstream_connect_timeout,
        std::time::Duration::from_secs(5)
    );
    assert!(server.tls.is_none());
    assert_eq!(config.log.level, "info");
    let route = &config.routes[0];
    assert_eq!(route.path, "/");
    assert!(route.host.is_none());
    assert!(route.preserve_host);
    assert!(!route.strip_prefix);
    assert_eq!(route.response_timeout, std::time::Duration::from_secs(60));
}

#[test]
fn listen_takes_one_string_or_a_list() {
    let one = portcullis::config::parse(
        "[server]\nlisten = \"127.0.0.1:1\"\n[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:3\"\nauth = \"none\"\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(one.server.listen.len(), 1);
    let many = portcullis::config::parse(
        "[server]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:3\"\nauth = \"none\"\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(many.server.listen.len(), 2);
}

#[test]
fn case_insensitive_routes_fold_route_and_login_paths() {
    let text = |server: &str, second_path: &str| {
        format!(
            "[server]\n{server}\n\n[oidc]\ndiscovery = \"http://127.0.0.1:9/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://app.example.com/OAuth/Callback\"\nlogout_path = \"/LogOut\"\n\n[[routes]]\nname = \"admin\"\npath = \"/Admin/Données\"\n\nupstream = \"http://127.0.0.1:3\"\n\n[[routes]]\nname = \"other\"\npath = \"{second_path}\"\nupstream = \"http://127.0.0.1:3\"\n"
        )
    };
    let folded = portcullis::config::parse(
        &text("case_insensitive_routes = true", "/x"),
        Path::new("."),
    )
    .unwrap();
    assert!(folded.server.case_insensitive_routes);
    assert_eq!(folded.routes[0].path, "/admin/donn%C3%A9es");
    let oidc = folded.oidc.as_ref().unwrap();
    assert_eq!(oidc.callback_path, "/oauth/callback");
    assert_eq!(oidc.logout_path, "/logout");

    let kept = portcullis::config::parse(&text("", "/x"), Path::new(".")).unwrap();
    assert!(!kept.server.case_insensitive_routes, "off by default");
    assert_eq!(kept.routes[0].path, "/Admin/Donn%C3%A9es");

    // Two paths that differ only in case are one route when case does not count.
    let Err(portcullis::config::ParseError::Invalid(problems)) = portcullis::config::parse(
        &text("case_insensitive_routes = true", "/ADMIN/DONNÉES/"),
        Path::new("."),
    ) else {
        panic!("routes differing only in case must be refused");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "routes[\"other\"]");
    assert!(
        problems[0]
            .message
            .contains("same host and path as routes[\"admin\"]"),
        "{problems:?}"
    );
}
