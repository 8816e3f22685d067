-- Indexes for `sort=due` and `sort=priority` (issue 12), so a page of either order is an
-- index range scan of one user's rows instead of a sort of all of them. The expressions are
-- exactly those `components/common/src/repo.rs` orders and seeks by (the planner matches
-- index expressions textually): todos without a due date sort last, under the
-- `NO_DUE_DATE` instant of `components/common/src/todo_list.rs`.
CREATE INDEX todos_user_due_idx
    ON todos (user_id, coalesce(due_at, '9999-12-31T23:59:59.999999Z'::timestamptz), id);
CREATE INDEX todos_user_priority_idx
    ON todos (user_id, priority DESC, created_at DESC, id DESC);
