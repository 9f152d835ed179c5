#!/usr/bin/env bash
# local-cluster.sh - a real single-node SLURM cluster on localhost, for repro's tests and for trying
# the slurm launcher on one machine (Debian/Ubuntu packages, run as root, no systemd needed).
#
#   eval "$(bash slurm/local-cluster.sh up DIR)"   # install if missing, configure, start, wait idle;
#                                                   # stdout is only: export SLURM_CONF=DIR/slurm.conf
#   bash slurm/local-cluster.sh status DIR          # daemons alive? sinfo + squeue
#   bash slurm/local-cluster.sh down DIR            # scancel jobs, stop the daemons recorded in DIR/run
#
# Env knobs: SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT (unset: 6817/6818, or the next free pair
# if another cluster holds them), SLURM_LOCAL_ACCOUNTING=none|dbd (dbd: MariaDB + slurmdbd so plain
# `sacct` works; adds ~15 s), SLURM_LOCAL_DBD_PORT / SLURM_LOCAL_DB_PORT, SLURM_LOCAL_TIMEOUT=60.
# Exit code 77: this machine cannot host the cluster (not root, no apt-get, install failed).
# Everything lives under DIR; `down` keeps it (rm -rf DIR for a fresh cluster).
set -euo pipefail

CMD=${1:-}; DIR=${2:-}
[ -n "$CMD" ] && [ -n "$DIR" ] || { sed -n '2,14p' "$0" >&2; exit 2; }
ACCT=${SLURM_LOCAL_ACCOUNTING:-none}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
log() { echo "[local-cluster] $*" >&2; }
die() { log "ERROR: $1"; exit "${2:-1}"; }
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd -P)
RUN=$DIR/run; SOCK=$DIR/munge/munge.socket; DBSOCK=$DIR/db/mysqld.sock
export SLURM_CONF=$DIR/slurm.conf

# ---- daemons: only ever the PIDs recorded in DIR/run/NAME.pid ----------------------------------
# alive NAME: recorded pid exists, is not a zombie (stopped daemons linger as zombies under a
# non-reaping PID 1, so kill -0 is not enough) and its comm is NAME (pid not reused).
alive() {
  local pid; pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  case "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" in Z|X|'') return 1 ;; esac
}
start() {  # start NAME CMD...: setsid/setpriv exec in place, so $! is the daemon itself
  local name=$1 i; shift
  setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$RUN/$name.pid"
  for i in $(seq 50); do alive "$name" && { log "started $name pid $!"; return; }; sleep 0.1; done
  tail -5 "$DIR/log/$name.out" >&2; die "$name did not start, see $DIR/log/$name.out"
}
stop() {
  local name=$1 i
  alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$(cat "$RUN/$name.pid")"
  for i in $(seq 100); do alive "$name" || break; sleep 0.2; done
  alive "$name" && { log "$name ignored SIGTERM for 20 s: SIGKILL"; kill -KILL "$(cat "$RUN/$name.pid")"; }
  rm -f "$RUN/$name.pid"; log "stopped $name"
}
wait_for() {  # wait_for WHAT CMD...
  local what=$1 t=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t < TIMEOUT)) || die "timeout after ${TIMEOUT}s waiting for $what (logs in $DIR/log)"
    sleep 0.2
  done
}

# ---- install ------------------------------------------------------------------------------------
install_pkgs() {
  local need=() p
  for p in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
  done
  if [ "$ACCT" = dbd ]; then
    command -v slurmdbd >/dev/null || need+=(slurmdbd)
    command -v mariadbd >/dev/null || need+=(mariadb-server)
  fi
  [ ${#need[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them" 77
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive  # postinst cannot start services without systemd: harmless
  local apt=(apt-get install -y -qq --no-install-recommends "${need[@]}")
  "${apt[@]}" >&2 || { apt-get update -qq >&2 && "${apt[@]}" >&2; } || die "apt-get install failed" 77
}

# ---- ports: defaults 6817/6818 (+6819 slurmdbd, 3306 MariaDB) unless taken --------------------
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_ports() {
  local p=6817
  if [ -z "${SLURM_LOCAL_CTLD_PORT:-}${SLURM_LOCAL_SLURMD_PORT:-}" ]; then
    while busy $p || busy $((p + 1)) || { [ "$ACCT" = dbd ] && busy $((p + 2)); }; do p=$((p + 10)); done
  fi
  CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-$p}; SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-$((p + 1))}
  DBD_PORT=${SLURM_LOCAL_DBD_PORT:-$((p + 2))}; DB_PORT=${SLURM_LOCAL_DB_PORT:-$((3306 + p - 6817))}
}

# ---- config -------------------------------------------------------------------------------------
write_config() {
  local hw cpus mem
  hw=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(($(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw") * 9 / 10))  # under the detected size, else DRAIN
  local acct="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt"
  [ "$ACCT" = dbd ] && acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK"
  # DefMemPerCPU: without it a job without --mem is given the whole node's memory, so only one
  # job runs at a time.  batch_sched_delay=0: schedule at submit, not up to 3 s later (first job
  # starts ~1 s after sbatch instead of ~3 s).  No GresTypes: --gres/--gpus are rejected at submit time.
  cat >"$SLURM_CONF" <<EOF
# written by slurm/local-cluster.sh
ClusterName=repro-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/state/slurmctld.pid
SlurmdPidFile=$DIR/spool/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerParameters=batch_sched_delay=0
DefMemPerCPU=$((mem / cpus))
JobAcctGatherType=jobacct_gather/linux
$acct
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [ "$ACCT" = dbd ]; then  # slurmdbd has no -f: it reads slurmdbd.conf next to $SLURM_CONF
    install -m 600 /dev/stdin "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.own.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=repro-local
EOF
  fi
  log "wrote $SLURM_CONF: CPUs=$cpus RealMemory=$mem ports $CTLD_PORT/$SLURMD_PORT accounting=$ACCT"
}

start_dbd() {
  if [ ! -d "$DIR/db/data/mysql" ]; then
    install -d -o mysql -g mysql "$DIR/db" "$DIR/db/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/db/data" --skip-test-db \
      --auth-root-authentication-method=socket >"$DIR/log/mariadb-install-db.out" 2>&1 ||
      die "mariadb-install-db failed, see $DIR/log/mariadb-install-db.out"
  fi
  alive mariadbd || start mariadbd setpriv --reuid=mysql --regid=mysql --init-groups /usr/sbin/mariadbd \
    --no-defaults --datadir="$DIR/db/data" --socket="$DBSOCK" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --log-error="$DIR/log/mariadbd.err" --innodb-buffer-pool-size=256M
  wait_for mariadb mariadb-admin --no-defaults -S "$DBSOCK" -u root ping
  mariadb --no-defaults -S "$DBSOCK" -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'repro-local';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
  alive slurmdbd || start slurmdbd /usr/sbin/slurmdbd -D
  wait_for slurmdbd sacctmgr -n show cluster
  sacctmgr -n -P show cluster format=Cluster | grep -qx repro-local || sacctmgr -i add cluster repro-local >&2
}

node_ready() {  # IDLE (or busy on a re-up), registered by the slurmd running now, not old state
  local info; info=$(scontrol -o show node localhost) || return 1
  [[ $info =~ " State="(IDLE|MIXED|ALLOCATED)" " ]] || return 1
  [[ $info =~ " SlurmdStartTime="([^ ]*) ]] && (($(date -d "${BASH_REMATCH[1]}" +%s) >= SLURMD_T0))
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd and munged need it)" 77
  local t=$SECONDS; install_pkgs; log "packages ready ($((SECONDS - t)) s)"
  mkdir -p "$DIR"/{state,spool,log,run}
  chmod 755 "$DIR"  # munged runs as the munge user and must reach DIR/munge
  setpriv --reuid=munge --regid=munge --clear-groups test -x "$DIR" ||
    die "the munge user cannot enter $DIR: use a DIR whose parents are world-searchable (e.g. under /tmp)"
  if alive slurmctld || alive slurmd || alive munged; then log "daemons already running: config kept"
  else pick_ports; write_config; fi
  if ! alive munged; then
    install -d -o munge -g munge -m 755 "$DIR/munge"
    [ -s "$DIR/munge/munge.key" ] || mungekey -c -k "$DIR/munge/munge.key" >&2
    chown munge:munge "$DIR/munge/munge.key"; chmod 600 "$DIR/munge/munge.key"
    # --force: only warn when a parent of DIR is group/world-writable without the sticky bit
    start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
      --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" \
      --seed-file="$DIR/munge/seed" --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log"
  fi
  wait_for munged bash -c "munge -n -S '$SOCK' | unmunge -S '$SOCK'"
  if [ "$ACCT" = dbd ]; then start_dbd; fi
  alive slurmctld || start slurmctld /usr/sbin/slurmctld -D -f "$SLURM_CONF"
  wait_for slurmctld bash -c "scontrol ping | grep -q 'is UP'"
  SLURMD_T0=0
  alive slurmd || { SLURMD_T0=$(($(date +%s) - 1)); start slurmd /usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF"; }
  wait_for "node idle" node_ready
  log "cluster up in $((SECONDS - t)) s"
  echo "export SLURM_CONF=$SLURM_CONF"
}

cmd_down() {
  if alive slurmctld && [ -n "$(squeue -h -o %A)" ]; then
    log "cancelling jobs: $(squeue -h -o %A | tr '\n' ' ')"
    scancel --full $(squeue -h -o %A) || true
    for _ in $(seq 60); do [ -z "$(squeue -h -o %A)" ] && break; sleep 0.5; done
  fi
  for n in slurmd slurmctld slurmdbd mariadbd munged; do stop $n; done
}

cmd_status() {
  for n in munged mariadbd slurmdbd slurmctld slurmd; do
    alive $n && echo "$n: running (pid $(cat "$RUN/$n.pid"))" || echo "$n: not running"
  done
  if alive slurmctld; then sinfo; squeue; fi
}

case "$CMD" in
  up) cmd_up ;; down) cmd_down ;; status) cmd_status ;;
  *) die "unknown command $CMD (up|down|status)" 2 ;;
esac
