//! Undo lists: a multi-step operation records how to undo each step it completed, so that a
//! failure at any later step leaves nothing behind (design.md: "Any failure undoes every
//! step already done").

/// One undo step: what it undoes, and how.
type Step = (&'static str, Box<dyn FnOnce() -> Result<(), String>>);

/// Steps to undo, run in reverse order on drop unless [`Undo::commit`] was called.
#[derive(Default)]
pub struct Undo {
    steps: Vec<Step>,
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|(name, _)| name)).finish()
    }
}

impl Undo {
    /// An empty undo list.
    pub fn new() -> Undo {
        Undo::default()
    }

    /// Records how to undo the step `what` that just succeeded.
    pub fn push(
        &mut self,
        what: &'static str,
        undo: impl FnOnce() -> Result<(), String> + 'static,
    ) {
        self.steps.push((what, Box::new(undo)));
    }

    /// The operation succeeded: forget the undo steps.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            tracing::debug!("undoing: {what}");
            if let Err(e) = undo() {
                tracing::warn!("could not undo {what}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[test]
    fn undo_runs_in_reverse_unless_committed() {
        let log = Rc::new(RefCell::new(Vec::new()));
        {
            let mut undo = Undo::new();
            for step in ["mount", "cgroup"] {
                let log = Rc::clone(&log);
                undo.push(step, move || {
                    log.borrow_mut().push(step);
                    Ok(())
                });
            }
        }
        assert_eq!(*log.borrow(), ["cgroup", "mount"]);
        let mut undo = Undo::new();
        let log2 = Rc::clone(&log);
        undo.push("x", move || {
            log2.borrow_mut().push("x");
            Ok(())
        });
        undo.commit();
        assert_eq!(log.borrow().len(), 2);
    }
}
