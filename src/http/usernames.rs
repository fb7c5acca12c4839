//! Names beside ids: every member object in an `/api` response (a board's
//! `members`, the member routes) gets its `username`, looked up in the users
//! table. Done here, once, on the way out, so the domain's events and the
//! views stay free of names that live in another store.

use std::collections::HashMap;

use bytes::Bytes;
use deadpool_postgres::Pool;
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::header;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::users;

/// `routes` with `username` filled into the member objects they answer with.
pub fn named(routes: BoxedFilter<(Response,)>, pool: Pool) -> BoxedFilter<(Response,)> {
    routes
        .and_then(move |response: Response| {
            let pool = pool.clone();
            async move { Ok::<_, Rejection>(with_usernames(&pool, response).await) }
        })
        .boxed()
}

/// The key every member object has.
const MEMBER_KEY: &[u8] = b"\"user_id\"";

async fn with_usernames(pool: &Pool, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !is_json || !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The body is ours and already in memory: this cannot really fail.
        Err(_) => return Response::from_parts(parts, Bytes::new().into()),
    };
    // Most answers (tasks, events) name no member: not parsed again.
    if !bytes.windows(MEMBER_KEY.len()).any(|w| w == MEMBER_KEY) {
        return Response::from_parts(parts, bytes.into());
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, bytes.into());
    };
    let ids = member_ids(&mut value);
    if ids.is_empty() {
        return Response::from_parts(parts, bytes.into());
    }
    let names = match users::usernames(pool, &ids).await {
        Ok(names) => names,
        Err(error) => {
            // The answer is still right without names; say why they are missing.
            tracing::warn!(%error, "could not look up members' usernames");
            HashMap::new()
        }
    };
    name_members(&mut value, &names);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Bytes::from(value.to_string()).into())
}

/// Calls `visit` on each member object of a response: `{user_id, role}`
/// itself, each of a `members` list, or the members of each board in a
/// `boards` page.
fn for_each_member(value: &mut Value, visit: &mut dyn FnMut(&mut Map<String, Value>)) {
    let Value::Object(object) = value else { return };
    if object.contains_key("user_id") && object.contains_key("role") {
        visit(object);
        return;
    }
    if let Some(Value::Array(boards)) = object.get_mut("boards") {
        for board in boards {
            for_each_member(board, visit);
        }
        return;
    }
    if let Some(Value::Array(members)) = object.get_mut("members") {
        for member in members {
            if let Value::Object(member) = member {
                visit(member);
            }
        }
    }
}

fn member_ids(value: &mut Value) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for_each_member(value, &mut |member| {
        ids.extend(
            member
                .get("user_id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<Uuid>().ok()),
        );
    });
    ids
}

/// Adds `username` to every member object of `value` whose user is named in
/// `names`.
fn name_members(value: &mut Value, names: &HashMap<Uuid, String>) {
    for_each_member(value, &mut |member| {
        let name = member
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<Uuid>().ok())
            .and_then(|id| names.get(&id));
        if let Some(name) = name {
            member.insert("username".into(), Value::from(name.as_str()));
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_are_named_wherever_a_response_lists_them() {
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let names = HashMap::from([(ann, "ann".to_owned()), (bob, "bob".to_owned())]);
        let member = |id: Uuid| json!({"user_id": id, "role": "editor"});
        let named =
            |id: Uuid, name: &str| json!({"user_id": id, "role": "editor", "username": name});

        let mut one = member(ann);
        name_members(&mut one, &names);
        assert_eq!(one, named(ann, "ann"));

        let mut list = json!({"members": [member(ann), member(bob)]});
        name_members(&mut list, &names);
        assert_eq!(
            list,
            json!({"members": [named(ann, "ann"), named(bob, "bob")]})
        );

        let mut page = json!({"boards": [{"id": 1, "members": [member(bob)], "tasks": []}]});
        name_members(&mut page, &names);
        assert_eq!(page["boards"][0]["members"], json!([named(bob, "bob")]));

        // A user the table no longer has keeps just the id.
        let gone = Uuid::new_v4();
        let mut list = json!({"members": [member(gone)]});
        name_members(&mut list, &names);
        assert_eq!(list, json!({"members": [member(gone)]}));
    }
}
