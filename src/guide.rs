//! # Embedding sigdrop in a library
//!
//! A crate that uses sigdrop inside its own signal handler — a profiler, a crash reporter, a
//! green-thread runtime that preempts with signals — makes a handful of decisions on behalf of
//! the applications that use it. This page lists them, with what each choice means for those
//! applications. (This module has no items; it is documentation only.)
//!
//! ## 1. The shared runtime or your own
//!
//! [`Runtime::global`](crate::Runtime::global) is one runtime for the whole process, created
//! with the default settings the first time anyone asks for it. [`Runtime::builder`](crate::Runtime::builder) makes a
//! runtime of your own.
//!
//! - **Use the global one** when the defaults suit you (a drainer thread, a headroom of 64
//!   spare jobs, grown by the first install: a handler's install before then finds none and
//!   needs a [reservation](crate::Runtime::reserve_to)) and you want to cost the application
//!   nothing extra when several libraries use sigdrop: they share one background thread and
//!   one pool. Call `Runtime::global()` once in ordinary context (for
//!   example in your `init` function) *before* installing your handler: reached for the first
//!   time from a handler it cannot be created there, and answers
//!   [`Error::GlobalUninitialized`](crate::Error::GlobalUninitialized) instead.
//! - **Build your own** when you need other settings — a manual drainer, a different headroom,
//!   a job limit ([`Builder::max_jobs`](crate::Builder::max_jobs)), every value deferred
//!   ([`Policy::AlwaysDefer`](crate::Policy::AlwaysDefer)) — or want your figures in
//!   [`Runtime::stats`](crate::Runtime::stats) to be yours alone. It costs one more thread (with
//!   the default drainer) and its own pool. Keep it in your library's state and hand it to your
//!   slots; a runtime lives as long as any of its slots.
//!
//! Do not make the choice for the application silently: if you build your own, say so in your
//! docs (the application will see a thread named `sigdrop-drainer`).
//!
//! An *application* (not a library) that wants the global runtime, and the `global()` slots
//! bound to it, with other settings builds it itself, first thing in `main`:
//! [`Builder::build_global`](crate::Builder::build_global). A library should not: whoever comes
//! second gets [`Error::GlobalExists`](crate::Error::GlobalExists).
//!
//! ## 2. Who runs destructors, and on which thread
//!
//! Objects your handler lets go of are destroyed later, in ordinary context, by whoever drains
//! the runtime:
//!
//! - [`Drainer::Thread`](crate::Drainer::Thread) (the default): a background thread, woken by
//!   the first hand-over of each burst. Your objects' destructors run on *that* thread — except
//!   that under the default [`Policy::Auto`](crate::Policy::Auto) objects removed in ordinary
//!   context are destroyed by the thread that removes them: inline, or, for objects that left
//!   a [`ReadSlot`](crate::ReadSlot), in the batches it fills and then helps destroy (most of
//!   them, with a busy writer). So destructors must be safe to run on another thread than the
//!   one that made the object, must not rely on its thread-locals, and may run inside your own
//!   calls that replace or remove objects: do not hold a lock there that a destructor takes.
//! - [`Drainer::Manual`](crate::Drainer::Manual): nobody, until someone calls
//!   [`Runtime::drain`](crate::Runtime::drain). Choose it when your library already has a
//!   natural safe point in ordinary context — an event loop's idle hook, a frame boundary, the
//!   thread that reads your profiler's results — and document that the application (or your
//!   own code) must call it; objects pile up until it does.
//!
//! A destructor that panics on the drainer is caught and counted
//! ([`Stats::dtor_panics`](crate::Stats::dtor_panics)); it does not take the thread down.
//!
//! Objects may hold slots of their own — a list whose nodes hold the next one in a
//! [`RefSlot`](crate::RefSlot) or a [`ReadSlot`](crate::ReadSlot), a tree of
//! [`KptrHash`](crate::KptrHash) maps, boxes that own the next [`Owned`](crate::Owned) box.
//! Tearing down the head — from a handler, so that the drainer destroys it, or inline in
//! ordinary context — destroys the whole structure at once, and never more than 32 destructors
//! one inside another: past that depth the rest is destroyed in a loop after the outermost
//! destructor returns, so a list of any length cannot overflow the stack of the thread
//! destroying it. And the slots inside a destroyed object need no grace period of their own
//! (the readers that could reach them left before their owner's destructor ran), so a list of
//! readable slots goes as fast as the rest.
//!
//! ## 3. Sizing what the handler may need
//!
//! Taking an object *out* of a slot in a handler never needs memory: the slot set aside what
//! its object will need when the object was put in. Putting an object *into an empty slot* from
//! a handler does need a job set aside beforehand, because a handler cannot allocate one:
//!
//! - Call [`Runtime::reserve`](crate::Runtime::reserve)`(n)` in ordinary context with the most
//!   such installs your handler can make before your ordinary code gets to run again (for a
//!   profiler that swaps in a fresh buffer when one fills: the buffers that can fill between two
//!   refills, per thread, times the threads).
//! - Top it up from ordinary code as it is used:
//!   [`Runtime::reserve_to`](crate::Runtime::reserve_to)`(n)` makes sure `n` are reserved again
//!   (it adds only what is missing), and [`Stats::reserved`](crate::Stats::reserved) says how
//!   many are left. A handler that finds none gets its value back
//!   ([`Rejected`](crate::Rejected)) and the slot is unchanged; decide what your handler does
//!   then (drop the sample and count it as lost, say), since it cannot wait. Dropped there, the
//!   value goes to the drainer as one without a job does (a spare job, else the emergency
//!   area, else leaked: counted in [`Stats`](crate::Stats)), never destroyed in the handler.
//! - Replacing an object with another in a handler also takes a job, for the object it
//!   displaces.
//! - A handler uses reserved jobs first, then spare ones if there happen to be any: only the
//!   reserved ones are promised. An install refused for another reason after taking its job (a
//!   busy map bucket, a full map) gives the job back to the reservation.
//! - A refusal for want of a job ([`Error::NoSpareJob`](crate::Error::NoSpareJob)) names the
//!   runtime ([`Runtime::id`](crate::Runtime::id)) and the reserved and spare jobs it found:
//!   a slot or map uses the runtime it was made with, so reserve on that one.
//! - [`Builder::headroom`](crate::Builder::headroom) is how many spare jobs ordinary code keeps
//!   ready; it matters for ordinary-context speed, not for what a handler may do.
//!
//! ## 4. Watching the backlog
//!
//! [`Runtime::stats`](crate::Runtime::stats) is cheap and may be called from anywhere, a
//! handler included. The figures worth exporting from a library:
//!
//! - `pending` and `peak_pending`: objects handed over and not yet destroyed (the backlog), now
//!   and at its highest. Threads that hand objects over in ordinary context keep it under
//!   [`Builder::max_pending`](crate::Builder::max_pending) by helping (plus one open batch of
//!   up to 64 per CPU, and the batch each of them may be closing at that moment); objects from
//!   handlers are kept near it by the code that installs them (an install that would grow the
//!   pool while the backlog is over the bound, with jobs waiting in it, waits for the drainer
//!   first, and so does one install in 64 into the runtime on each thread that finds a spare
//!   job; each 15 ms at most). If the drainer thread stays inside one destructor for 10 ms
//!   (blocked on a lock the waiting thread holds, say), those threads go on over the bound:
//!   `drainer_stalls` counts each time. `pending` leaves
//!   out owned boxes (they count nowhere on their way to the drainer): `owned_alive` counts
//!   every box that exists, the ones dropped in handlers and not yet destroyed included; their
//!   makers wait for the drainer when they pile up. With
//!   [`Drainer::Manual`](crate::Drainer::Manual), handlers' objects wait until somebody calls
//!   `drain`. Objects that left a [`ReadSlot`](crate::ReadSlot) also wait for the readers that
//!   may hold them: a read guard that is never dropped keeps those (and only those) pending.
//! - `wakes`: wake-up syscalls; `restricted_wakes`: those your handlers made (with
//!   [`Wake::Lazy`](crate::Wake::Lazy), none unless a CPU's queue reaches the high watermark or
//!   a handler parks an object in the emergency area).
//! - `reserved`, `reserve_failures`: jobs left for your handler, and installs it had to give up.
//!   `reserved_for_teardowns`: reserved jobs that values without a job of their own, dropped in
//!   handlers, had to take (should stay 0; see [`Runtime::reserve`](crate::Runtime::reserve)
//!   for the order in which such values take jobs).
//! - `emergency` and `leaked`: must stay 0. Non-zero means a handler let go of objects that had
//!   no job set aside (see [`Detached::is_reserved`](crate::Detached::is_reserved)) faster than
//!   the spare jobs could cover. The usual ones: clones of an `Arc` from
//!   [`ReadSlot::clone_current`](crate::ReadSlot::clone_current) that a handler drops after
//!   the object was replaced (use a [`ReadSlot<Shared<T>>`](crate::Shared), whose clones never
//!   need a job, or keep the reference only as long as the read needs it, and read under
//!   [`read::enter`](crate::read::enter) with [`load`](crate::ReadSlot::load) instead), and
//!   values an ordinary-context replace displaced that ordinary code moved into the handler's
//!   reach (call [`Detached::reserve`](crate::Detached::reserve) on them first).
//! - `total` and `peak_total`: the memory sigdrop holds, in jobs.
//!
//! ## 5. Process exit
//!
//! Nothing special happens at exit. Like any static, an object still in a slot kept in a
//! `static` is not destroyed, and neither is the global runtime; objects handed over but not yet
//! destroyed when the process exits are not destroyed either (the drainer thread simply stops
//! with the process). If a destructor must run — it flushes a file, say — clear the slot and call
//! [`Runtime::drain_and_wait`](crate::Runtime::drain_and_wait) in ordinary context before
//! exiting (it waits for readers if it must, and for the drainer thread if that had already
//! taken some of the objects), or drop every handle of a runtime you own:
//! dropping the last one stops its drainer and runs every pending destructor, without waiting
//! for readers (none can reach the runtime's objects any more).
//!
//! A crash handler (`SIGSEGV`, `SIGBUS`) that ends the process — `_exit`, or re-raising the
//! signal with its default disposition — ends it from restricted context: no destructor runs
//! after that, neither of what the handler handed over nor of anything else. Do in the handler
//! itself whatever must happen before the end (write the report with `write(2)`), not in a
//! destructor.
//!
//! ## 6. `fork`
//!
//! A child process created by `fork` has only the thread that called `fork`. sigdrop keeps its
//! promises there:
//!
//! - the runtimes' drainer threads are started again, on the first use of each runtime in
//!   ordinary context in the child (an install, a removal, `drain`, `stats`...); objects handed
//!   over from signal handlers before that wait for it;
//! - read guards held by the parent's other threads are forgotten, so they do not hold the
//!   child's grace periods up — unless the thread that called `fork` held a read guard itself at
//!   that moment: then the child keeps waiting for the parent's readers too (fork outside
//!   read-side sections);
//! - sigdrop's own locks, a [`KptrHash`](crate::KptrHash)'s bucket locks among them, are
//!   never inherited taken (the thread calling `fork` waits for each map operation under way
//!   to finish, a read of every bucket of every live map; meanwhile a map operation in a
//!   handler answers [`Error::WouldBlock`](crate::Error::WouldBlock));
//! - dropping a runtime in the child never waits for the parent's drainer thread;
//! - objects the parent's drainer was destroying when `fork` ran are destroyed in the parent
//!   only (the child's copies of them are never destroyed), and
//!   [`Runtime::drain_and_wait`](crate::Runtime::drain_and_wait) in the child does not wait
//!   for them;
//! - an [`Owned`](crate::Owned) box another thread was dropping in a handler at that instant is
//!   destroyed in the child by its drainer; the boxes dropped before it on that CPU stay the
//!   parent's (never destroyed in the child).
//!
//! A child that calls `exec` soon needs to do nothing. Do not call `fork` from a signal handler
//! that may have interrupted sigdrop code on the same thread.
//!
//! ## 7. Your handler
//!
//! Install it through [`signal::install`](crate::signal::install), which enters restricted
//! context for you and preserves `errno`. If your library must install it another way (it
//! chains to a previous handler, say), make [`restricted::enter`](crate::restricted::enter)
//! its first statement, after [`signal::ErrnoGuard::save`](crate::signal::ErrnoGuard::save) if
//! your handler makes system calls of its own (sigdrop's own calls preserve `errno`). Either
//! way, test it with [`alloc_check::RestrictedAllocs`](crate::alloc_check::RestrictedAllocs): it
//! counts allocations made in your handler, and tells you when your handler never ran in
//! restricted context at all.
//!
//! sigdrop's own threads (the drainer, a [`signal::Storm`](crate::signal::Storm)'s sender)
//! block no signals, so a process-directed signal (`SIGPROF` from `setitimer`, say) may run
//! your handler on them, in the middle of a drain. That is safe: everything a handler may call
//! allows for interrupting any sigdrop code, the drainer's included. A profiler will see the
//! drainer's samples too, as it should: it is your process's CPU time.
