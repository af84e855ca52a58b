"""Parallel writers: a git worktree per writing task, merged back on request.

`_runner.Isolating` wraps a writing runner; `_manager.Worktrees` makes, finishes, merges and
discards worktrees (`_git` runs the commands, `_merge` the four ways back); `_cleanup` sweeps and
reconciles at start; `_overlap` and `_watch` warn of tasks changing the same files; `_leases`
guards the files of writers sharing a folder. The pure rules are in `outrider._core._worktrees`
and `outrider._core._leases`. See docs/worktrees.md.
"""
