//! GitHub login: GitHub speaks OAuth 2.0 without ID tokens, so the
//! identity is read from its REST API with the user's access token:
//! `/user`, `/user/emails`, `/user/orgs` and `/user/teams`; the lists are
//! read page by page (100 a page, up to 10 pages).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::clientauth::GitHubLogin;
use crate::oidc::client::{HttpClient, next_link};

#[derive(Deserialize)]
struct User {
    login: String,
    id: u64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

/// Most pages of a list read: 10 × 100 organizations or teams.
const MAX_PAGES: usize = 10;

/// Every page of a paged list, following `Link: rel="next"` on the same
/// API host, up to [`MAX_PAGES`].
async fn get_all<T: for<'de> Deserialize<'de>>(
    client: &HttpClient,
    api: &str,
    path: &str,
    token: &str,
) -> Result<Vec<T>, &'static str> {
    let mut url = format!("{api}{path}");
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let resp = client
            .get_with_bearer(&url, token)
            .await
            .and_then(|r| r.success())
            .map_err(|_| "provider_unavailable")?;
        let page: Vec<T> =
            serde_json::from_slice(&resp.body).map_err(|_| "provider_unavailable")?;
        out.extend(page);
        // The token goes only where the API lives: a next link elsewhere
        // ends the listing.
        match resp.link.as_deref().and_then(next_link) {
            Some(next) if next.starts_with(&format!("{api}/")) => url = next.to_string(),
            _ => break,
        }
    }
    Ok(out)
}

async fn get<T: for<'de> Deserialize<'de>>(
    client: &HttpClient,
    api: &str,
    path: &str,
    token: &str,
) -> Result<T, &'static str> {
    let resp = client
        .get_with_bearer(&format!("{api}{path}"), token)
        .await
        .and_then(|r| r.success())
        .map_err(|_| "provider_unavailable")?;
    serde_json::from_slice(&resp.body).map_err(|_| "provider_unavailable")
}

/// The user's claims: `sub` (the numeric id), `login`, `name`, `email`
/// (the primary verified address), `orgs` and `groups` (organizations,
/// then teams as `org/slug`). Fails with the metric result when GitHub
/// cannot be read or the user is in none of the allowed organizations and
/// teams.
pub async fn identity(
    client: &HttpClient,
    github: &GitHubLogin,
    token: &str,
) -> Result<Map<String, Value>, &'static str> {
    let api = github
        .api_url
        .as_deref()
        .unwrap_or("https://api.github.com")
        .trim_end_matches('/');
    let user: User = get(client, api, "/user", token).await?;
    let email = match user.email {
        Some(e) => Some(e),
        None => get::<Vec<Email>>(client, api, "/user/emails?per_page=100", token)
            .await
            .ok()
            .and_then(|list| {
                list.into_iter()
                    .find(|e| e.primary && e.verified)
                    .map(|e| e.email)
            }),
    };
    let orgs: Vec<String> = get_all::<Org>(client, api, "/user/orgs?per_page=100", token)
        .await?
        .into_iter()
        .map(|o| o.login)
        .collect();
    let teams: Vec<String> = get_all::<Team>(client, api, "/user/teams?per_page=100", token)
        .await?
        .into_iter()
        .map(|t| format!("{}/{}", t.organization.login, t.slug))
        .collect();
    if !allowed(github, &orgs, &teams) {
        return Err("claims_denied");
    }
    let mut groups = orgs.clone();
    groups.extend(teams.iter().cloned());
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.id.to_string()));
    claims.insert("login".into(), json!(user.login));
    claims.insert("preferred_username".into(), json!(user.login));
    if let Some(n) = user.name {
        claims.insert("name".into(), json!(n));
    }
    if let Some(e) = email {
        claims.insert("email".into(), json!(e));
    }
    claims.insert("orgs".into(), json!(orgs));
    claims.insert("teams".into(), json!(teams));
    claims.insert("groups".into(), json!(groups));
    Ok(claims)
}

/// Organization and team names compare without case, as GitHub's do.
fn allowed(github: &GitHubLogin, orgs: &[String], teams: &[String]) -> bool {
    if github.organizations.is_empty() && github.teams.is_empty() {
        return true;
    }
    let has = |list: &[String], want: &String| list.iter().any(|x| x.eq_ignore_ascii_case(want));
    github.organizations.iter().any(|o| has(orgs, o)) || github.teams.iter().any(|t| has(teams, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_and_teams_admit_without_case_and_nothing_else() {
        let g = GitHubLogin {
            organizations: vec!["Acme".into()],
            teams: vec!["other/SRE".into()],
            ..Default::default()
        };
        assert!(allowed(&g, &["acme".into()], &[]));
        assert!(allowed(&g, &[], &["Other/sre".into()]));
        assert!(!allowed(&g, &["acme-evil".into()], &["other/sre-x".into()]));
        assert!(allowed(&GitHubLogin::default(), &[], &[]));
    }
}
