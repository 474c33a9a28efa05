;;; (shepherd service) as the Fruix lab has it.
;;;
;;; GNU Shepherd has no Debian package, so the lab's PID 1 (lab/sbin/shepherd)
;;; loads a system's config.scm through this module: a subset of GNU Shepherd
;;; 0.10's documented API, written from its manual and source and behaving as
;;; it does where a deploy can tell the difference:
;;;
;;;   - `service' takes a provision list and the keywords #:requirement
;;;     #:start #:stop #:respawn? #:respawn-limit #:documentation; any other
;;;     keyword is an error, as a typo in a real configuration would be;
;;;   - `make-forkexec-constructor' forks and execs in the child: a command
;;;     that does not exist is a child that says "exec of ... failed" and
;;;     exits 1, as in Shepherd, so a service "starts" and then dies; a
;;;     daemon that forks into the background is a process that exits at once;
;;;   - a service whose process dies is respawned if #:respawn? is true,
;;;     unless it was respawned more than N times in T seconds (#:respawn-limit,
;;;     default (5 . 7) as in 0.10): then it is disabled, never looped on;
;;;   - `register-services' takes a list (0.10) or, as before 0.10, services
;;;     as rest arguments; a service whose name is already registered
;;;     replaces the registered one: at once if that one is stopped, when
;;;     it next stops if it is running (its "replacement"), as in 0.10.2;
;;;   - `unregister-services' stops, then forgets, services (0.10.2);
;;;   - the messages Shepherd's per-service fibers print (stopping,
;;;     replacements, a disabled service refusing to start, everything
;;;     `start-in-the-background' does) go to shepherd's log only: in
;;;     Shepherd they come from fibers that do not answer the herd client
;;;     asking, so herd never shows them.
;;;
;;; What it leaves out: fibers (everything runs in PID 1's one loop: a
;;; forkexec start returns at once, a kill destructor waits for its process),
;;; actions, one-shot and transient services, PID files, endpoints, and
;;; Shepherd's loggers (a child writes to #:log-file itself, or to PID 1's
;;; output).  The procedures below the "lab's PID 1" line are for
;;; lab/sbin/shepherd, not part of Shepherd's API.

(define-module (shepherd service)
  #:use-module (srfi srfi-1)
  #:use-module (srfi srfi-9)
  #:use-module (ice-9 format)
  #:use-module (ice-9 match)
  #:export (service
            service?
            service-provision
            service-canonical-name
            service-requirement
            service-documentation
            service-respawn?
            service-respawn-limit
            service-status
            service-running-value
            service-enabled?
            service-status-changes
            service-last-respawns
            service-startup-failures
            service-replacement
            default-respawn-limit
            default-process-termination-grace-period
            make-forkexec-constructor
            make-kill-destructor
            register-services
            unregister-services
            lookup-service
            start-service
            stop-service
            enable-service
            disable-service
            start-in-the-background
            ;; For the lab's PID 1.
            registered-services
            forget-every-service
            handle-process-termination
            stop-every-service
            current-client-port
            local-output))

;;; Messages, as Shepherd logs them: "shepherd[PID]: ..." on PID 1's output,
;;; and to the herd client being answered, if any.

(define current-client-port (make-parameter #f))

(define (local-output fmt . args)
  (let ((line (apply format #f fmt args)))
    (format (current-output-port) "shepherd[~a]: ~a~%" (getpid) line)
    (force-output (current-output-port))
    (when (current-client-port)
      (format (current-client-port) "~a~%" line))))

(define (log-output fmt . args)
  "A message for shepherd's log only, never for the herd client being
answered: what Shepherd 0.10 prints from a service's own fiber (its
\"controller\") or from a fiber of its own, whose output never reaches
that client."
  (parameterize ((current-client-port #f))
    (apply local-output fmt args)))

;;; Services.

(define default-respawn-limit
  ;; Respawned more than CAR times within CDR seconds: disabled (0.10's value).
  (make-parameter '(5 . 7)))

(define default-process-termination-grace-period
  ;; Seconds between a destructor's signal and SIGKILL.
  (make-parameter 5))

(define-record-type <service>
  (%make-service provision requirement start stop respawn? respawn-limit
                 documentation status running enabled? changes respawns failures
                 replacement)
  service?
  (provision service-provision)
  (requirement service-requirement)
  (start service-start)
  (stop service-stop)
  (respawn? service-respawn?)
  (respawn-limit service-respawn-limit)
  (documentation service-documentation)
  ;; stopped, starting, running or stopping.
  (status service-status set-service-status!)
  (running service-running-value set-service-running-value!)
  (enabled? service-enabled? set-service-enabled!)
  ;; ((STATUS . SECONDS) ...), newest first, as herd shows "running since".
  (changes service-status-changes set-service-status-changes!)
  (respawns service-last-respawns set-service-last-respawns!)
  (failures service-startup-failures set-service-startup-failures!)
  ;; The service registered under its name while it ran: installed when it
  ;; stops.
  (replacement service-replacement set-service-replacement!))

(define* (service provision
                  #:key
                  (requirement '())
                  (start (lambda () #t))
                  (stop (lambda (running) #f))
                  (respawn? #f)
                  (respawn-limit (default-respawn-limit))
                  (documentation "[No description]."))
  "Return a new service providing PROVISION, a non-empty list of symbols."
  (unless (and (pair? provision) (every symbol? provision))
    (error "service: provision must be a non-empty list of symbols:" provision))
  (unless (and (list? requirement) (every symbol? requirement))
    (error "service: #:requirement must be a list of symbols:" requirement))
  (unless (and (procedure? start) (procedure? stop))
    (error "service: #:start and #:stop must be procedures" provision))
  (match respawn-limit
    (#f #t)
    (((? integer?) . (? real?)) #t)
    (_ (error "service: #:respawn-limit must be #f or (TIMES . SECONDS):" respawn-limit)))
  (%make-service provision requirement start stop respawn? respawn-limit
                 documentation 'stopped #f #t '() '() '() #f))

(define (service-canonical-name service)
  (car (service-provision service)))

(define (now) (current-time))

(define (set-status! service status)
  (set-service-status! service status)
  (set-service-status-changes! service
                               (cons (cons status (now))
                                     (service-status-changes service))))

;;; The registry.

(define %services '())                  ;in registration order

(define (registered-services) %services)

(define (lookup-service name)
  "Return the registered service that provides NAME, or #f."
  (find (lambda (s) (memq name (service-provision s))) %services))

(define (register-service new)
  "Register NEW as Shepherd 0.10.2's registry does: if a registered service
provides one of its names, a running one gets NEW as its replacement (see
`stop-service'), any other is replaced at once, NEW disabled if it was."
  (match (any lookup-service (service-provision new))
    (#f
     (set! %services (append %services (list new))))
    ((? (lambda (old) (eq? (service-status old) 'running)) old)
     (set-service-replacement! old new)
     (log-output "Recording replacement for ~a." (service-canonical-name old)))
    (old
     (unless (service-enabled? old)
       (disable-service new))
     (set! %services (map (lambda (s) (if (eq? s old) new s)) %services)))))

(define (register-services . args)
  "Register SERVICES, a list (Shepherd 0.10); services given as rest
arguments, the form before 0.10, are accepted too.  A service whose name is
already registered replaces the registered one, at once or, if that one is
running, when it next stops: so loading a system's next configuration
restarts nothing."
  (let ((new (match args
               (((? list? services)) services)
               (services services))))
    (for-each (lambda (s)
                (unless (service? s)
                  (error "register-services: not a service:" s)))
              new)
    (for-each register-service new)
    *unspecified*))

(define (unregister-services services)
  "Stop those of SERVICES that are not stopped, then remove them from the
registry (Shepherd 0.10.2).  A service stopped here with a replacement
leaves its replacement registered, as in Shepherd."
  (for-each (lambda (s)
              (unless (eq? (service-status s) 'stopped)
                (stop-service s)))
            services)
  (set! %services (remove (lambda (s) (memq s services)) %services))
  #t)

(define (forget-every-service)
  "Forget every registered service without stopping any, as `herd unload
root all' does in Shepherd 0.10: what runs is no longer supervised."
  (set! %services '()))

;;; Starting and stopping.

(define (start-service service . args)
  "Start SERVICE after its requirements; return its running value, #f if
it or a requirement could not be started."
  (define name (service-canonical-name service))
  (define (start-requirement req)
    (let ((s (lookup-service req)))
      (cond ((not s)
             (local-output "Service ~a could not be found." req)
             #f)
            ((eq? (service-status s) 'starting) #f) ;a requirement cycle
            (else (start-service s)))))
  (cond
   ((eq? (service-status service) 'running)
    (service-running-value service))
   ((not (service-enabled? service))
    (log-output "Service ~a is currently disabled." name)
    #f)
   (else
    (set-service-status! service 'starting)
    (let ((problems (remove start-requirement (service-requirement service))))
      (if (pair? problems)
          (begin
            (for-each (lambda (req)
                        (local-output "Service ~a depends on ~a." name req))
                      problems)
            (set-service-status! service 'stopped)
            (local-output "Service ~a could not be started." name)
            #f)
          (let ((running (catch #t
                           (lambda () (apply (service-start service) args))
                           (lambda (key . rest)
                             (local-output "Exception caught while starting ~a: ~s"
                                           name (cons key rest))
                             #f))))
            (cond (running
                   (set-service-running-value! service running)
                   (set-status! service 'running)
                   (local-output "Service ~a has been started." name))
                  (else
                   (set-service-startup-failures!
                    service (cons (now) (service-startup-failures service)))
                   (set-status! service 'stopped)
                   (local-output "Service ~a could not be started." name)))
            running))))))

(define (required-by? service dependent)
  (any (lambda (req) (memq req (service-provision service)))
       (service-requirement dependent)))

(define (stop-service service . args)
  "Stop SERVICE and, first, the running services that require it.  Return
the list of services stopped, SERVICE's replacement in its place if it had
one: Shepherd 0.10.2 installs the replacement once the service has stopped,
and `herd restart' starts what this returns (0.10.1 fixed it to start the
replacement, not the original)."
  (define name (service-canonical-name service))
  (if (not (eq? (service-status service) 'running))
      (begin
        (local-output "Service ~a is not running." name)
        (list service))
      (let ((dependents (append-map
                         (lambda (s)
                           (if (and (eq? (service-status s) 'running)
                                    (required-by? service s))
                               (stop-service s)
                               '()))
                         %services)))
        (set-service-status! service 'stopping)
        (let ((left (catch #t
                      (lambda ()
                        (apply (service-stop service)
                               (service-running-value service) args))
                      (lambda (key . rest)
                        (local-output "Exception caught while stopping ~a: ~s"
                                      name (cons key rest))
                        #t))))
          (set-service-running-value! service #f)
          (set-status! service 'stopped)
          (log-output (if left
                          "Service ~a might have failed to stop."
                          "Service ~a stopped.")
                      name))
        (let ((replacement (service-replacement service)))
          (when replacement
            (set-service-replacement! service #f)
            (register-service replacement))
          (cons (or replacement service) dependents)))))

(define (enable-service service) (set-service-enabled! service #t))
(define (disable-service service) (set-service-enabled! service #f))

(define (start-in-the-background names)
  "Start the services NAMES (symbols), reporting those that could not be.
A running service is left as it is, a stopped one started.  Shepherd does
this in a fiber of its own and returns at once; the lab, having none,
starts them before returning, but like Shepherd's its messages are for the
log only (a `herd load' does not show them)."
  (parameterize ((current-client-port #f))
    (start-named names)))

(define (start-named names)
  (let ((failures (remove (lambda (name)
                            (let ((s (lookup-service name)))
                              (if s
                                  (start-service s)
                                  (begin
                                    (local-output "Service ~a could not be found." name)
                                    #f))))
                          names)))
    (if (null? failures)
        (local-output "Successfully started ~a services in the background."
                      (length names))
        (local-output "The following services could not be started in the \
background:~{ ~a~}." failures))
    *unspecified*))

;;; Processes.

(define %signals-of-pid1 (list SIGCHLD SIGINT SIGHUP SIGTERM))

(define (exec-in-child command user group log-file directory environment)
  "In a freshly forked child: become what the service asked for, then exec
COMMAND.  Never returns; any failure is a message and exit status 1."
  (define (fail fmt . args)
    (apply format (current-error-port) fmt args)
    (force-output (current-error-port))
    (primitive-exit 1))
  (catch #t
    (lambda ()
      ;; PID 1's handlers must not run in the child.
      (for-each (lambda (sig) (sigaction sig SIG_DFL)) %signals-of-pid1)
      ;; Its own session and process group, so the kill destructor can signal
      ;; the service's processes without signalling PID 1.
      (setsid)
      (let ((null (open-fdes "/dev/null" O_RDONLY)))
        (dup2 null 0)
        (close-fdes null))
      (when log-file
        (catch #t
          (lambda ()
            (let ((fd (open-fdes log-file (logior O_WRONLY O_CREAT O_APPEND) #o640)))
              (dup2 fd 1)
              (dup2 fd 2)
              (unless (memv fd '(1 2)) (close-fdes fd))))
          (lambda (key . args)
            (fail "failed to open log-file ~s: ~s~%" log-file (cons key args)))))
      ;; Nothing of PID 1 (its herd socket, Guile's own pipes) leaks into
      ;; the service.
      (do ((fd 3 (+ fd 1))) ((= fd 1024))
        (catch 'system-error (lambda () (close-fdes fd)) (const #f)))
      ;; Group before user: once the user is not root, setgid is refused.
      (when group
        (catch #t
          (lambda ()
            (setgroups #())
            (setgid (group:gid (getgr group))))
          (lambda (key . args)
            (fail "failed to change to group ~s: ~s~%" group (cons key args)))))
      (when user
        (catch #t
          (lambda () (setuid (passwd:uid (getpw user))))
          (lambda (key . args)
            (fail "failed to change to user ~s: ~s~%" user (cons key args)))))
      (catch #t
        (lambda () (chdir directory))
        (lambda (key . args)
          (fail "failed to change directory to ~s~%" directory)))
      (environ environment)
      (catch 'system-error
        (lambda () (apply execlp (car command) command))
        (lambda args
          (fail "exec of ~s failed: ~a~%"
                (car command) (strerror (system-error-errno args))))))
    (lambda _ (primitive-exit 1)))
  (primitive-exit 1))

(define* (make-forkexec-constructor command
                                    #:key
                                    (user #f)
                                    (group #f)
                                    (log-file #f)
                                    (directory "/")
                                    (environment-variables (environ)))
  "Return a start procedure that forks a child running COMMAND (a list of
strings: the program and its arguments) in the foreground, and returns its PID."
  (unless (and (pair? command) (every string? command))
    (error "make-forkexec-constructor: command must be a list of strings:" command))
  (lambda args
    (when log-file
      ;; As a host's shepherd does, the log's directory is made when missing.
      (let mkdir-p ((dir (dirname log-file)))
        (unless (file-exists? dir)
          (mkdir-p (dirname dir))
          (mkdir dir #o755))))
    (let ((pid (primitive-fork)))
      (if (zero? pid)
          (exec-in-child command user group log-file directory
                         environment-variables)
          pid))))

(define (reap pid)
  "#t once PID has terminated (reaped here, or by someone else)."
  (catch 'system-error
    (lambda () (not (zero? (car (waitpid pid WNOHANG)))))
    (lambda _ (not (false-if-exception (kill pid 0))))))

(define* (make-kill-destructor #:optional (signal SIGTERM)
                               #:key (grace-period
                                      (default-process-termination-grace-period)))
  "Return a stop procedure that sends SIGNAL to the process group of the PID
it is given, SIGKILL after GRACE-PERIOD seconds, and returns once the process
has terminated."
  (lambda (pid . args)
    ;; As Shepherd 0.10: the signal, then SIGKILL after the grace period, go
    ;; to the service's process group (the forkexec child leads its own,
    ;; setsid), so its children in that group get them too; only the PID is
    ;; waited for, and a child that outlives it (or left the group) is left
    ;; running, PID 1's orphan, while a restart starts the new process in a
    ;; new session.  Shepherd signals the PID alone when its group is
    ;; shepherd's own (between fork and setsid); here, when the group is
    ;; gone.
    (catch 'system-error
      (lambda () (kill (- pid) signal))
      (lambda _ (false-if-exception (kill pid signal))))
    (let wait ((left (* 50 grace-period)))
      (cond ((reap pid) #f)
            ((zero? left)
             (false-if-exception (kill (- pid) SIGKILL))
             (false-if-exception (kill pid SIGKILL))
             (false-if-exception (waitpid pid))
             #f)
            (else (usleep 20000) (wait (- left 1)))))))

;;; The lab's PID 1: what happens when a service's process terminates, and
;;; at shutdown.

(define (respawn-limit-hit? service)
  (match (service-respawn-limit service)
    (#f #f)
    ((times . seconds)
     (let ((since (- (now) seconds)))
       (>= (count (lambda (t) (> t since)) (service-last-respawns service))
           times)))))

(define (handle-process-termination pid status)
  "PID terminated with STATUS (waitpid's): if it was a running service's
process, the service is stopped, then respawned or disabled."
  (let ((service (find (lambda (s)
                         (and (eq? (service-status s) 'running)
                              (eqv? (service-running-value s) pid)))
                       %services)))
    (when service
      (let ((name (service-canonical-name service)))
        (cond ((status:exit-val status)
               => (lambda (code)
                    (unless (zero? code)
                      (local-output "Service ~a (PID ~a) exited with ~a." name pid code))))
              ((status:term-sig status)
               => (lambda (sig)
                    (local-output "Service ~a (PID ~a) terminated with signal ~a."
                                  name pid sig))))
        (set-service-running-value! service #f)
        (set-status! service 'stopped)
        (cond ((not (service-enabled? service)) #t)
              ((and (service-respawn? service) (not (respawn-limit-hit? service)))
               (local-output "Respawning ~a." name)
               (set-service-last-respawns! service
                                           (cons (now) (service-last-respawns service)))
               (start-service service))
              (else
               ;; As Shepherd 0.10: a service that is not respawned is
               ;; disabled too when its process dies.
               (disable-service service)
               (local-output "Service ~a has been disabled." name)
               (when (service-respawn? service)
                 (local-output "  (Respawning too fast.)"))))))))

(define (stop-every-service)
  "Stop every running service, the last registered first."
  (for-each (lambda (s)
              (when (eq? (service-status s) 'running)
                (stop-service s)))
            (reverse %services)))
