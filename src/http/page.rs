//! The board page: `GET /` and its assets, served from `server.web_dir`
//! (the build output of `clients/web`). The server needs no Node at run
//! time; without a built page, `/` says how to build one.

use std::path::{Path, PathBuf};

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>Streamboard</title></head><body><h1>Streamboard</h1>\
<p>The board page is not built. From the repository: \
<code>cd clients/web &amp;&amp; npm ci &amp;&amp; npm run build</code> \
(<code>./Run.sh</code> does it for you), or point <code>server.web_dir</code> \
at a built page.</p><p>The API is up: <a href=\"/health\">/health</a>, \
<a href=\"/ready\">/ready</a>.</p></body></html>";

/// `GET /` (the page; its query says which board) and `GET /assets/<file>`.
pub fn routes(web_dir: PathBuf) -> BoxedFilter<(Response,)> {
    let index_dir = web_dir.clone();
    let index = warp::path::end().and(warp::get()).and_then(move || {
        let path = index_dir.join("index.html");
        async move {
            Ok::<_, Rejection>(match tokio::fs::read(&path).await {
                Ok(bytes) => file_response(&path, bytes),
                Err(_) => html(StatusCode::OK, NOT_BUILT),
            })
        }
    });
    let asset = warp::path("assets")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move |name: String| {
            let dir = web_dir.join("assets");
            async move {
                // One plain file name: no way out of the folder.
                let safe = !name.starts_with('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !safe {
                    return Err(warp::reject::not_found());
                }
                let path = dir.join(&name);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => Ok(file_response(&path, bytes)),
                    Err(_) => Err(warp::reject::not_found()),
                }
            }
        });
    index.or(asset).unify().boxed()
}

fn file_response(path: &Path, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(bytes.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    // Rebuilt pages keep their file names: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn html(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_built_page_the_root_says_how_to_build_it() {
        let routes = routes(PathBuf::from("/nonexistent/web"));
        let response = warp::test::request().path("/").reply(&routes).await;
        assert_eq!(response.status(), 200);
        let body = String::from_utf8_lossy(response.body()).into_owned();
        assert!(body.contains("npm run build"), "{body}");
    }

    #[tokio::test]
    async fn the_page_and_its_assets_come_from_the_folder_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("sb-page-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>board</p>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "let x;").unwrap();
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let routes = routes(dir.clone());

        let index = warp::test::request().path("/?board=x").reply(&routes).await;
        assert_eq!(index.body().as_ref(), b"<p>board</p>");
        let script = warp::test::request()
            .path("/assets/app.js")
            .reply(&routes)
            .await;
        assert_eq!(script.status(), 200);
        assert_eq!(
            script.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        for escape in [
            "/assets/..%2Fsecret.txt",
            "/assets/../secret.txt",
            "/secret.txt",
        ] {
            let response = warp::test::request().path(escape).reply(&routes).await;
            assert_eq!(response.status(), 404, "{escape}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
