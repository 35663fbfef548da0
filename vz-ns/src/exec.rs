//! Executing a program inside the VE with a clean environment: argv and env turned into C
//! strings before fork, and execvpe semantics with the PATH of the *given* environment
//! (glibc's execvpe would search the caller's PATH).

use std::ffi::CString;

use nix::errno::Errno;

use crate::error::{NsError, Result};

/// PATH used when the given environment has none (the usual root PATH).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program ready to exec: checked and converted in the parent, used in the child.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    program: String,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl ExecPlan {
    /// Checks `argv` and `env` and prepares them.
    ///
    /// # Errors
    /// [`NsError::BadSpec`] for an empty argv, a NUL byte, or an env name that is empty or
    /// holds `=`.
    pub(crate) fn new(argv: &[String], env: &[(String, String)]) -> Result<Self> {
        let program = argv
            .first()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| NsError::BadSpec { field: "argv", reason: "no program given".into() })?
            .clone();
        let c = |field: &'static str, s: String| {
            CString::new(s).map_err(|e| NsError::BadSpec {
                field,
                reason: format!("NUL byte in {:?}", e.into_vec()),
            })
        };
        let argv = argv.iter().map(|a| c("argv", a.clone())).collect::<Result<Vec<_>>>()?;
        let mut envp = Vec::with_capacity(env.len());
        for (key, value) in env {
            if key.is_empty() || key.contains('=') {
                return Err(NsError::BadSpec {
                    field: "env",
                    reason: format!("bad variable name {key:?}"),
                });
            }
            envp.push(c("env", format!("{key}={value}"))?);
        }
        let candidates = if program.contains('/') {
            vec![c("argv", program.clone())?]
        } else {
            let path =
                env.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
            path.split(':')
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .map(|dir| c("argv", format!("{dir}/{program}")))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(ExecPlan { program, candidates, argv, env: envp })
    }

    /// Replaces the process image. Returns only on failure, with the text
    /// `"<program>: <reason>"` (as a shell would say it).
    pub(crate) fn exec(&self) -> String {
        let mut error = Errno::ENOENT;
        let mut saw_eacces = false;
        for path in &self.candidates {
            let Err(e) = nix::unistd::execve(path, &self.argv, &self.env);
            match e {
                Errno::ENOENT | Errno::ENOTDIR => {}
                Errno::EACCES => saw_eacces = true,
                other => {
                    error = other;
                    break;
                }
            }
        }
        if saw_eacces && error == Errno::ENOENT {
            error = Errno::EACCES;
        }
        format!("{}: {}", self.program, error.desc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn path_search_uses_the_given_env() {
        let env = vec![("PATH".to_owned(), "/a::/b".to_owned())];
        let plan = ExecPlan::new(&s(&["ls", "-l"]), &env).expect("valid");
        let c: Vec<_> =
            plan.candidates.iter().map(|c| c.to_str().expect("utf8").to_owned()).collect();
        assert_eq!(c, ["/a/ls", "./ls", "/b/ls"]);
        let plan = ExecPlan::new(&s(&["/bin/sh"]), &[]).expect("valid");
        assert_eq!(plan.candidates.len(), 1);
        let plan = ExecPlan::new(&s(&["true"]), &[]).expect("valid");
        assert!(plan.candidates.iter().any(|c| c.to_bytes() == b"/bin/true"));
    }

    #[test]
    fn bad_specs_are_rejected() {
        assert!(ExecPlan::new(&[], &[]).is_err());
        assert!(ExecPlan::new(&s(&[""]), &[]).is_err());
        assert!(ExecPlan::new(&s(&["a\0b"]), &[]).is_err());
        let err = ExecPlan::new(&s(&["x"]), &[("A=B".into(), "c".into())]).expect_err("bad name");
        assert!(err.to_string().contains("A=B"), "{err}");
    }
}
