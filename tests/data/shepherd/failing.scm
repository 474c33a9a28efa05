;; Test fixture: what a real host's Shepherd cannot keep running.
;;   missing:     a command that does not exist;
;;   daemonizes:  a daemon started without its foreground flag (it forks
;;                into the background and its first process exits at once);
;;   steady:      a service that runs, beside them.
(use-modules (shepherd service))

(register-services
 (list
  (service '(missing)
           #:start (make-forkexec-constructor '("/usr/local/bin/no-such-daemon" "--port" "8080"))
           #:stop (make-kill-destructor)
           #:respawn? #t
           #:respawn-limit '(3 . 10))
  (service '(daemonizes)
           #:start (make-forkexec-constructor '("/bin/sh" "-c" "sleep 1000 &"))
           #:stop (make-kill-destructor)
           #:respawn? #t)
  (service '(steady)
           #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
           #:stop (make-kill-destructor)
           #:respawn? #t)))

(start-in-the-background '(missing daemonizes steady))
