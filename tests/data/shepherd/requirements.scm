;; Test fixture: a service whose requirement fails to start does not start.
(use-modules (shepherd service))

(register-services
 (service '(broken) #:start (lambda () #f))
 (service '(needs-broken)
          #:requirement '(broken)
          #:start (make-forkexec-constructor '("/bin/sleep" "1000")))
 (service '(needs-nothing-known)
          #:requirement '(no-such-service)
          #:start (make-forkexec-constructor '("/bin/sleep" "1000")))
 (service '(fine) #:start (make-forkexec-constructor '("/bin/sleep" "1000"))
          #:stop (make-kill-destructor)))

(start-in-the-background '(needs-broken needs-nothing-known fine))
