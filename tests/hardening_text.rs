//! Strict input: text the stores cannot hold (NUL, lone surrogates) is 422
//! naming the field on every route of both modes, before any store sees
//! it; 4-byte characters are ordinary text; passwords that are blank or
//! common are refused; `null` where DOMAIN.md forbids it is 422; in `prod`
//! every `Set-Cookie` carries `Secure`.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::*;

/// Hostile string values as they travel in a JSON body, and why each is
/// refused. Every one of them used to reach PostgreSQL or the fold.
const HOSTILE: [&str; 4] = [r"a\u0000b", r"\u0000", r"\ud800", r"x\udfffy"];

/// Sends `template` with `{}` replaced by each hostile string and asserts
/// 422 `validation_failed` naming `field`.
async fn assert_refused(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    template: &str,
    field: &str,
) {
    for hostile in HOSTILE {
        let body = template.replace("{}", hostile);
        let mut headers = vec![];
        let bearer;
        if let Some(token) = token {
            bearer = format!("Bearer {token}");
            headers.push(("authorization", bearer.as_str()));
        }
        let response = server
            .send_raw(
                method.clone(),
                path,
                &headers,
                Some(body.clone().into_bytes()),
            )
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 422, "{method} {path} {body}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "validation_failed", "{text}");
        assert_eq!(
            error["error"]["details"]["field"], field,
            "{method} {path} {body}: {text}"
        );
    }
}

#[tokio::test]
async fn quick_routes_refuse_text_the_stores_cannot_hold() {
    let env = spawn_app().await;
    let server = env.server();
    let board = server.quick_board("Text").await;
    let board_id = board["id"].as_str().unwrap();
    let task = server.quick_task(board_id, "Task").await;
    let boards = "/quick/boards".to_owned();
    let board_path = format!("/quick/boards/{board_id}");
    let tasks = format!("{board_path}/tasks");
    let task_path = format!("{tasks}/{}", task["id"].as_str().unwrap());

    let cases: [(Method, &str, &str, &str); 11] = [
        (Method::POST, &boards, r#"{"name":"{}"}"#, "name"),
        (
            Method::POST,
            &boards,
            r#"{"name":"n","columns":["a","{}"]}"#,
            "columns",
        ),
        (Method::PATCH, &board_path, r#"{"name":"{}"}"#, "name"),
        (
            Method::PATCH,
            &board_path,
            r#"{"columns":["{}"]}"#,
            "columns",
        ),
        (Method::POST, &tasks, r#"{"title":"{}"}"#, "title"),
        (
            Method::POST,
            &tasks,
            r#"{"title":"t","description":"{}"}"#,
            "description",
        ),
        (
            Method::POST,
            &tasks,
            r#"{"title":"t","status":"{}"}"#,
            "status",
        ),
        (
            Method::POST,
            &tasks,
            r#"{"title":"t","assigned_to":"{}"}"#,
            "assigned_to",
        ),
        (
            Method::POST,
            &tasks,
            r#"{"title":"t","fields":{"k":"{}"}}"#,
            "fields.k",
        ),
        (
            Method::PATCH,
            &task_path,
            r#"{"fields":{"k":{"deep":["{}"]}}}"#,
            "fields.k.deep",
        ),
        (
            Method::PATCH,
            &task_path,
            r#"{"fields":{"{}":1}}"#,
            "fields",
        ),
    ];
    for (method, path, template, field) in cases {
        assert_refused(server, method, path, None, template, field).await;
    }

    // Nothing was written: the board is where the two creates left it.
    let after = server.get_json(&board_path).await;
    assert_eq!(after["version"], 2, "{after}");
}

#[tokio::test]
async fn quick_text_with_four_byte_characters_is_kept_as_sent() {
    let env = spawn_app().await;
    let server = env.server();
    let board = server.quick_board("Emoji").await;
    let board_id = board["id"].as_str().unwrap();
    let title = "Ship 🚀 𝕳𝖊𝖑𝖑𝖔 (𠜎)";

    let created = server
        .post(
            &format!("/quick/boards/{board_id}/tasks"),
            json!({"title": title, "fields": {"🔑": "𝄞"}}),
        )
        .await;

    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.unwrap();
    assert_eq!(task["title"], title);
    assert_eq!(task["fields"]["🔑"], "𝄞");
}

#[tokio::test]
async fn api_routes_refuse_text_the_stores_cannot_hold() {
    let env = spawn_api().await;
    let server = env.server();
    let owner = server.board_owner("text", "Text").await;
    let token = owner.token.as_str();
    let board_path = format!("/api/boards/{}", owner.board_id);
    let task = server.api_task(token, &owner.board_id, "Task").await;
    let task_path = format!("{board_path}/tasks/{}", task["id"].as_str().unwrap());
    let members = format!("{board_path}/members");
    let webhooks = format!("{board_path}/webhooks");

    // Before login: the request that used to answer 500.
    let unauthenticated: [(&str, &str, &str); 4] = [
        (
            "/api/auth/login",
            r#"{"username":"{}","password":"whatever123"}"#,
            "username",
        ),
        (
            "/api/auth/login",
            r#"{"username":"someone","password":"{}"}"#,
            "password",
        ),
        (
            "/api/auth/register",
            r#"{"username":"{}","password":"a long passphrase"}"#,
            "username",
        ),
        (
            "/api/auth/register",
            r#"{"username":"someone","password":"pass{}phrase"}"#,
            "password",
        ),
    ];
    for (path, template, field) in unauthenticated {
        assert_refused(server, Method::POST, path, None, template, field).await;
    }

    let authenticated: [(Method, &str, &str, &str); 8] = [
        (Method::POST, "/api/boards", r#"{"name":"{}"}"#, "name"),
        (
            Method::PATCH,
            &board_path,
            r#"{"columns":["ok","{}"]}"#,
            "columns",
        ),
        (
            Method::POST,
            &format!("{board_path}/tasks"),
            r#"{"title":"t","description":"{}"}"#,
            "description",
        ),
        (
            Method::PATCH,
            &task_path,
            r#"{"fields":{"k":"{}"}}"#,
            "fields.k",
        ),
        (
            Method::POST,
            &members,
            r#"{"username":"bo{}b","role":"editor"}"#,
            "username",
        ),
        (
            Method::POST,
            &webhooks,
            r#"{"url":"https://example.com/{}"}"#,
            "url",
        ),
        (
            Method::POST,
            &webhooks,
            r#"{"url":"https://example.com/","events":["{}"]}"#,
            "events",
        ),
        (
            Method::POST,
            &webhooks,
            r#"{"url":"https://example.com/","secret":"{}"}"#,
            "secret",
        ),
    ];
    for (method, path, template, field) in authenticated {
        assert_refused(server, method, path, Some(token), template, field).await;
    }

    let board = server.get_json_auth(token, &board_path).await;
    assert_eq!(board["version"], 2, "nothing was written: {board}");
}

#[tokio::test]
async fn blank_and_common_passwords_are_refused() {
    let env = spawn_api().await;
    let server = env.server();

    for password in [
        "        ",
        "\t\t\t\t  \n\n",
        "password",
        "Password1",
        "qwertyuiop",
    ] {
        let response = server
            .post(
                "/api/auth/register",
                json!({"username": unique_name("pw"), "password": password}),
            )
            .await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], "password", "{password:?}");
    }
    server
        .register(&unique_name("pw"), "a passphrase nobody uses")
        .await;
}

#[tokio::test]
async fn null_where_a_field_may_only_be_omitted_is_422() {
    let env = spawn_api().await;
    let server = env.server();
    let owner = server.board_owner("nulls", "Nulls").await;
    let board_path = format!("/api/boards/{}", owner.board_id);

    let cases = [
        (
            "/api/boards".to_owned(),
            json!({"name": "n", "columns": null}),
            "columns",
        ),
        (
            format!("{board_path}/members"),
            json!({"user_id": null, "role": "editor"}),
            "user_id",
        ),
        (
            format!("{board_path}/webhooks"),
            json!({"url": "https://example.com/", "events": null}),
            "events",
        ),
        (
            format!("{board_path}/webhooks"),
            json!({"url": "https://example.com/", "secret": null}),
            "secret",
        ),
    ];
    for (path, body, field) in cases {
        let response = server.post_auth(&owner.token, &path, body.clone()).await;
        let error = error_body(response, 422).await;
        assert_eq!(error["details"]["field"], field, "{path} {body}");
    }
    let quick = server
        .post("/quick/boards", json!({"name": "n", "columns": null}))
        .await;
    assert_eq!(error_body(quick, 422).await["details"]["field"], "columns");
}

#[tokio::test]
async fn with_secure_cookies_every_set_cookie_carries_secure() {
    let env = TestEnv::api()
        .setting("STREAMBOARD__AUTH__COOKIE_SECURE", "true")
        .spawn()
        .await;
    let server = env.server();

    let registered = server
        .post(
            "/api/auth/register",
            json!({"username": unique_name("sec"), "password": PASSWORD}),
        )
        .await;
    let refused = server
        .send_raw(
            Method::GET,
            "/api/me",
            &[("authorization", "Bearer forged")],
            None,
        )
        .await;
    let logout = server
        .send_raw(Method::POST, "/api/auth/logout", &[], None)
        .await;

    for (what, response) in [
        ("register", registered),
        ("401", refused),
        ("logout", logout),
    ] {
        let cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().to_owned())
            .collect();
        assert!(!cookies.is_empty(), "{what} sets a cookie");
        for cookie in cookies {
            assert!(
                cookie.ends_with("; Secure") || cookie.contains("; Secure;"),
                "{what}: {cookie}"
            );
        }
    }
}

#[tokio::test]
async fn cors_allows_listed_origins_and_the_page_s_own_and_no_other() {
    let env = TestEnv::quick()
        .setting("STREAMBOARD__SERVER__CORS_ORIGINS", "https://app.example")
        .spawn()
        .await;
    let server = env.server();
    let own = format!("http://{}", server.addr);
    let create = |origin: String| async move {
        server
            .send_raw(
                Method::POST,
                "/quick/boards",
                &[("origin", origin.as_str())],
                Some(br#"{"name":"CORS"}"#.to_vec()),
            )
            .await
    };

    let listed = create("https://app.example".into()).await;
    assert_eq!(listed.status(), 201);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(create(own).await.status(), 201, "the page's own origin");
    assert_eq!(create("https://evil.example".into()).await.status(), 403);
}
