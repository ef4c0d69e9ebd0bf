// weft-bpf: Weft's BPF loader helper, a small CLI over Debian's libbpf 1.1 driven by
// src/datapath/loader.ts. Each subcommand does one thing, prints one JSON line on stdout
// (ringbuf: binary frames) and on failure one "WEFT_BPF: ..." line on stderr, exit 1.
// It holds no state of its own: everything that must outlive it is pinned in bpffs.
// CLI and pin layout: docs/bpf-loading.md.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// libbpf 1.1 and the 6.1 uapi headers predate tcx (kernel 6.6); the kernel's numbers are stable ABI.
#define WEFT_BPF_TCX_INGRESS 46
#define WEFT_BPF_TCX_EGRESS 47
#define WEFT_BPF_LINK_TYPE_TCX 11

static const char *g_cmd = "weft-bpf";
static char g_libbpf_last[768]; // last libbpf warnings, appended to our error line
static int g_verbose;

// ---- errors and output ------------------------------------------------------------------------

static void oneline(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	size_t n = strlen(s);
	while (n && s[n - 1] == ' ')
		s[--n] = 0;
}

// fail: one line on stderr, "WEFT_BPF: <cmd>: <what>: <libbpf error> (libbpf: <last warning>)".
__attribute__((noreturn, format(printf, 2, 3))) static void fail(int err, const char *fmt, ...)
{
	char what[1024], why[256] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err) {
		if (err > 0)
			err = -err;
		libbpf_strerror(err, why, sizeof(why));
	}
	oneline(what);
	oneline(g_libbpf_last);
	fprintf(stderr, "WEFT_BPF: %s: %s%s%s%s%s%s\n", g_cmd, what, err ? ": " : "", why,
		g_libbpf_last[0] ? " (libbpf: " : "", g_libbpf_last, g_libbpf_last[0] ? ")" : "");
	exit(1);
}

__attribute__((noreturn)) static void usage(void)
{
	fprintf(stderr,
		"WEFT_BPF: usage: weft-bpf load OBJ PIN_DIR [--const NAME=VALUE]... [--max-entries MAP=N]... [--migrate MAP]... | "
		"attach-cgroup PROG_PIN CGROUP_DIR HOOK LINK_PIN | "
		"attach-tc PROG_PIN NETNS DEV ingress|egress LINK_PIN | replace LINK_PIN PROG_PIN | "
		"detach LINK_PIN | link-info LINK_PIN | map-dump MAP_PIN | map-lookup-server MAP_PIN | listen-exec ADDR PORT FD CMD... | map-write (stdin: u PIN KEY VAL | d PIN KEY) | "
		"map-server (stdin: binary batches) | "
		"map-create PIN TYPE KEY_SIZE VALUE_SIZE MAX_ENTRIES [--flags N] [--name NAME] [--inner PIN] | "
		"map-set-inner OUTER_PIN KEYHEX INNER_PIN | "
		"run PROG_PIN [--ctx HEX] [--data HEX] [--repeat N] | "
		"ringbuf MAP_PIN [--lost-map MAP_PIN] [--batch-bytes N] | netns-cookie NETNS\n");
	exit(2);
}

// Keeps the last few libbpf warnings, one line each; a verifier log keeps its tail (the reason).
static void remember_warning(char *msg)
{
	char *end = strstr(msg, "-- END PROG LOAD LOG --");
	if (end)
		*end = 0;
	oneline(msg);
	const char *text = msg;
	if (strncmp(text, "libbpf: ", 8) == 0)
		text += 8;
	size_t n = strlen(text);
	if (n == 0)
		return;
	if (n > 240)
		text += n - 240; // the end of a long message says what went wrong
	size_t have = strlen(g_libbpf_last);
	if (have + strlen(text) + 3 >= sizeof(g_libbpf_last)) {
		// drop the oldest warnings to make room
		char *cut = g_libbpf_last;
		while (cut && strlen(cut) + strlen(text) + 3 >= sizeof(g_libbpf_last))
			cut = strstr(cut + 1, "; ");
		memmove(g_libbpf_last, cut ? cut + 2 : "", cut ? strlen(cut + 2) + 1 : 1);
		have = strlen(g_libbpf_last);
	}
	snprintf(g_libbpf_last + have, sizeof(g_libbpf_last) - have, "%s%s", have ? "; " : "", text);
}

static int on_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (g_verbose)
		return vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_WARN) {
		char msg[65536];
		vsnprintf(msg, sizeof(msg), fmt, ap);
		remember_warning(msg);
	}
	return 0;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_hex(FILE *f, const void *data, size_t n)
{
	const unsigned char *p = data;
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
	fputc('"', f);
}

// ---- small filesystem and fd helpers --------------------------------------------------------

// pathf: format a path into a PATH_MAX buffer, refusing (not truncating) one that is too long.
__attribute__((format(printf, 2, 3))) static void pathf(char *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX)
		fail(ENAMETOOLONG, "path too long: %.80s...", out);
}

static void mkdir_p(const char *dir)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		fail(ENAMETOOLONG, "mkdir %s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0700) && errno != EEXIST)
			fail(errno, "mkdir %s", buf);
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		fail(errno, "mkdir %s", buf);
}

static void parent_dir(const char *path, char *out, size_t n)
{
	snprintf(out, n, "%s", path);
	char *slash = strrchr(out, '/');
	if (slash && slash != out)
		*slash = 0;
}

// Pin fd at path atomically: pin beside it (PATH~PID), then rename over any older pin,
// so a reader never sees the path missing.
static void pin_replace(int fd, const char *path)
{
	char tmp[PATH_MAX], dir[PATH_MAX];

	parent_dir(path, dir, sizeof(dir));
	mkdir_p(dir);
	pathf(tmp, "%s~%d", path, getpid()); // bpffs refuses names with a dot
	unlink(tmp);
	if (bpf_obj_pin(fd, tmp))
		fail(errno, "pin %s", path);
	if (rename(tmp, path)) {
		int err = errno;
		unlink(tmp);
		fail(err, "pin %s (rename)", path);
	}
}

static int obj_get(const char *pin, const char *what)
{
	int fd = bpf_obj_get(pin);
	if (fd < 0)
		fail(errno, "open pinned %s %s", what, pin);
	return fd;
}

static int path_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static __u32 prog_id_of(int fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		fail(errno, "read program info");
	return info.id;
}

// bpf_link_info as the running kernel fills it; the union starts at offset 16 (8-aligned).
struct link_raw {
	__u32 type, id, prog_id, pad;
	union {
		struct {
			__u64 cgroup_id;
			__u32 attach_type;
		} cgroup;
		struct {
			__u32 ifindex;
			__u32 attach_type;
		} tcx;
		unsigned char raw[128];
	};
};

static void link_info(int fd, struct link_raw *out)
{
	__u32 len = sizeof(*out);
	memset(out, 0, sizeof(*out));
	if (bpf_obj_get_info_by_fd(fd, out, &len))
		fail(errno, "read link info");
}

// ---- load -------------------------------------------------------------------------------------

struct const_arg {
	const char *name;
	unsigned long long value;
};

static void set_constants(struct bpf_object *obj, const char *objpath, struct const_arg *c, int n)
{
	struct bpf_map *rodata = NULL, *m;
	struct btf *btf = bpf_object__btf(obj);

	if (n == 0)
		return;
	bpf_object__for_each_map(m, obj)
	{
		const char *name = bpf_map__name(m);
		size_t len = strlen(name);
		if (bpf_map__is_internal(m) && len >= 7 && strcmp(name + len - 7, ".rodata") == 0)
			rodata = m;
	}
	int sec = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;
	if (!rodata || sec < 0)
		fail(0, "%s: --const given but the object has no .rodata (declare const volatile)", objpath);

	size_t size;
	const void *init = bpf_map__initial_value(rodata, &size);
	unsigned char *data = malloc(size);
	if (!init || !data)
		fail(ENOMEM, "%s: .rodata", objpath);
	memcpy(data, init, size);

	const struct btf_type *t = btf__type_by_id(btf, sec);
	const struct btf_var_secinfo *vs = btf_var_secinfos(t);
	for (int i = 0; i < n; i++) {
		int found = 0;
		for (int j = 0; j < btf_vlen(t); j++) {
			const struct btf_type *var = btf__type_by_id(btf, vs[j].type);
			if (strcmp(btf__name_by_offset(btf, var->name_off), c[i].name) != 0)
				continue;
			__u32 sz = vs[j].size;
			if (sz != 1 && sz != 2 && sz != 4 && sz != 8)
				fail(0, "%s: --const %s: size %u is not an integer", objpath, c[i].name, sz);
			if (sz < 8 && c[i].value >> (sz * 8))
				fail(0, "%s: --const %s=%llu does not fit %u bytes", objpath, c[i].name,
				     c[i].value, sz);
			memcpy(data + vs[j].offset, &c[i].value, sz); // little-endian host
			found = 1;
		}
		if (!found)
			fail(0, "%s: --const %s: no such variable in .rodata", objpath, c[i].name);
	}
	if (bpf_map__set_initial_value(rodata, data, size))
		fail(errno, "%s: set .rodata", objpath);
	free(data);
}

// --max-entries MAP=N sizes a map before it is created (bpf_map__set_max_entries); names of maps
// the object does not declare are ignored, so one setting can go to every object. A map already
// pinned is reused only as it is: its type, key/value sizes and flags must be the object's, and
// its max_entries the one asked for; without --max-entries for it, the pinned size is adopted (a
// size set by configuration belongs to the map, not to each object sharing it). Anything else is
// refused naming the map and what differs (libbpf alone says only "parameter mismatch").
// A map of another shape pinned at `pin` that the caller rebuilds (load --migrate MAP): the pinned
// map is kept at "<pin>-prev" for the caller to copy from, and the pin itself is left for the new
// map. Programs still using the old map keep it. A "<pin>-prev" already there is an earlier
// migration that did not finish: it stays the source, and the pin (that migration's new map,
// maybe part-filled) is dropped.
static void move_aside(const char *objpath, const char *name, const char *pin)
{
	char prev[PATH_MAX];
	pathf(prev, "%s-prev", pin);
	if (!path_exists(prev)) {
		int fd = obj_get(pin, "map");
		if (bpf_obj_pin(fd, prev))
			fail(errno, "%s: map %s: keep the pinned map at %s", objpath, name, prev);
		close(fd);
	}
	if (unlink(pin))
		fail(errno, "%s: map %s: unpin %s", objpath, name, pin);
}

static void size_map(const char *objpath, struct bpf_map *m, const char *pin, struct const_arg *sizes, int nsizes,
		     int migrate)
{
	const char *name = bpf_map__name(m);
	long long want = -1;
	for (int i = 0; i < nsizes; i++)
		if (strcmp(sizes[i].name, name) == 0)
			want = (long long)sizes[i].value;
	if (want >= 0 && bpf_map__set_max_entries(m, (__u32)want))
		fail(errno, "%s: map %s: set max_entries %lld", objpath, name, want);
	if (!path_exists(pin))
		return;
	int fd = bpf_obj_get(pin);
	if (fd < 0)
		fail(errno, "%s: map %s: open pin %s", objpath, name, pin);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		fail(errno, "%s: map %s: info of pin %s", objpath, name, pin);
	close(fd);
	char diff[512] = "";
	size_t n = 0;
#define WEFT_DIFF(field, pinned, wanted, fmt)                                                           \
	if ((pinned) != (wanted) && n < sizeof(diff))                                                   \
		n += snprintf(diff + n, sizeof(diff) - n, "%s" field " " fmt " pinned, " fmt " wanted", n ? ", " : "", \
			      pinned, wanted);
	WEFT_DIFF("type", info.type, (__u32)bpf_map__type(m), "%u")
	WEFT_DIFF("key_size", info.key_size, bpf_map__key_size(m), "%u")
	WEFT_DIFF("value_size", info.value_size, bpf_map__value_size(m), "%u")
	WEFT_DIFF("map_flags", info.map_flags, bpf_map__map_flags(m), "0x%x")
	if (want >= 0)
		WEFT_DIFF("max_entries", info.max_entries, (__u32)want, "%u")
#undef WEFT_DIFF
	if (n && migrate) {
		move_aside(objpath, name, pin);
		return;
	}
	if (n)
		fail(0,
		     "%s: map %s pinned at %s differs from the one wanted: %s; this load does not rebuild it "
		     "(load --migrate): remove the pin (recreate the node) or ask for the pinned shape",
		     objpath, name, pin, diff);
	if (want < 0 && info.max_entries != bpf_map__max_entries(m) && bpf_map__set_max_entries(m, info.max_entries))
		fail(errno, "%s: map %s: adopt pinned max_entries %u", objpath, name, info.max_entries);
}

// load OBJ PIN_DIR [--const NAME=VALUE]... [--max-entries MAP=N]... [--migrate MAP]...
// Maps (not .rodata/.data/.bss) are pinned at PIN_DIR/maps/<map>; an existing pin of the same name
// is reused (libbpf checks type, key/value size, max_entries and flags), so maps survive reloads.
// A pinned map of another shape is refused, unless named by --migrate: then it is kept at
// <pin>-prev and a new one is created (see move_aside).
// Programs are pinned at PIN_DIR/progs/<object>/<program>, replacing the previous version's pin.
static int cmd_load(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *objpath = argv[0], *pindir = argv[1];
	struct const_arg consts[64], sizes[64];
	const char *migrate[64];
	int nconst = 0, nsizes = 0, nmigrate = 0;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--migrate") == 0) {
			if (i + 1 >= argc || nmigrate == 64)
				usage();
			migrate[nmigrate++] = argv[++i];
			continue;
		}
		int is_const = strcmp(argv[i], "--const") == 0;
		if ((!is_const && strcmp(argv[i], "--max-entries")) || i + 1 >= argc || nconst == 64 || nsizes == 64)
			usage();
		const char *opt = argv[i];
		char *eq = strchr(argv[++i], '=');
		if (!eq)
			usage();
		*eq = 0;
		char *end;
		errno = 0;
		struct const_arg *c = is_const ? &consts[nconst++] : &sizes[nsizes++];
		c->name = argv[i];
		c->value = strtoull(eq + 1, &end, 0);
		if (errno || *end || eq[1] == 0 || (!is_const && (c->value == 0 || c->value > 0xffffffffULL)))
			fail(0, "%s %s: bad number '%s'", opt, argv[i], eq + 1);
	}

	struct bpf_object *obj = bpf_object__open_file(objpath, NULL);
	if (!obj)
		fail(errno, "open %s", objpath);
	set_constants(obj, objpath, consts, nconst);

	char objname[NAME_MAX + 1], path[PATH_MAX], mapdir[PATH_MAX];
	snprintf(objname, sizeof(objname), "%s", bpf_object__name(obj));
	pathf(mapdir, "%s/maps", pindir);
	mkdir_p(mapdir);

	struct bpf_map *m;
	int nmaps = 0;
	char reused[256] = {};
	bpf_object__for_each_map(m, obj)
	{
		if (bpf_map__is_internal(m))
			continue;
		pathf(path, "%s/%s", mapdir, bpf_map__name(m));
		if (bpf_map__set_pin_path(m, path))
			fail(errno, "%s: map %s: set pin path", objpath, bpf_map__name(m));
		int may_migrate = 0;
		for (int j = 0; j < nmigrate; j++)
			may_migrate |= strcmp(migrate[j], bpf_map__name(m)) == 0;
		size_map(objpath, m, path, sizes, nsizes, may_migrate);
		if (nmaps < 256)
			reused[nmaps] = path_exists(path); // (a map moved aside is not reused)
		nmaps++;
	}
	if (bpf_object__load(obj))
		fail(errno, "load %s", objpath);

	struct bpf_program *p;
	bpf_object__for_each_program(p, obj)
	{
		pathf(path, "%s/progs/%s/%s", pindir, objname, bpf_program__name(p));
		pin_replace(bpf_program__fd(p), path);
	}

	FILE *o = stdout;
	fputs("{\"object\":", o);
	json_str(o, objname);
	fputs(",\"programs\":[", o);
	int first = 1;
	bpf_object__for_each_program(p, obj)
	{
		pathf(path, "%s/progs/%s/%s", pindir, objname, bpf_program__name(p));
		fputs(first ? "{\"name\":" : ",{\"name\":", o);
		json_str(o, bpf_program__name(p));
		fputs(",\"section\":", o);
		json_str(o, bpf_program__section_name(p));
		fputs(",\"pin\":", o);
		json_str(o, path);
		fprintf(o, ",\"id\":%u}", prog_id_of(bpf_program__fd(p)));
		first = 0;
	}
	fputs("],\"maps\":[", o);
	first = 1;
	int i = 0;
	bpf_object__for_each_map(m, obj)
	{
		if (bpf_map__is_internal(m))
			continue;
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(bpf_map__fd(m), &info, &len))
			fail(errno, "map %s: info", bpf_map__name(m));
		fputs(first ? "{\"name\":" : ",{\"name\":", o);
		json_str(o, bpf_map__name(m));
		fputs(",\"pin\":", o);
		json_str(o, bpf_map__pin_path(m));
		fprintf(o, ",\"id\":%u,\"reused\":%s}", info.id, i < 256 && reused[i] ? "true" : "false");
		first = 0;
		i++;
	}
	fputs("]}\n", o);
	bpf_object__close(obj); // pins keep programs and maps alive
	return 0;
}

// ---- attach -----------------------------------------------------------------------------------

static const struct {
	const char *hook;
	enum bpf_attach_type type;
} cgroup_hooks[] = {
	{ "connect4", BPF_CGROUP_INET4_CONNECT },
	{ "connect6", BPF_CGROUP_INET6_CONNECT },
	{ "sendmsg4", BPF_CGROUP_UDP4_SENDMSG },
	{ "sendmsg6", BPF_CGROUP_UDP6_SENDMSG },
	{ "recvmsg4", BPF_CGROUP_UDP4_RECVMSG },
	{ "recvmsg6", BPF_CGROUP_UDP6_RECVMSG },
	{ "getpeername4", BPF_CGROUP_INET4_GETPEERNAME },
	{ "getpeername6", BPF_CGROUP_INET6_GETPEERNAME },
	{ "getsockname4", BPF_CGROUP_INET4_GETSOCKNAME },
	{ "getsockname6", BPF_CGROUP_INET6_GETSOCKNAME },
	{ "bind4", BPF_CGROUP_INET4_BIND },
	{ "bind6", BPF_CGROUP_INET6_BIND },
	{ "post_bind4", BPF_CGROUP_INET4_POST_BIND },
	{ "post_bind6", BPF_CGROUP_INET6_POST_BIND },
	{ "sock_create", BPF_CGROUP_INET_SOCK_CREATE },
	{ "sock_release", BPF_CGROUP_INET_SOCK_RELEASE },
	{ "sock_ops", BPF_CGROUP_SOCK_OPS },
	{ "ingress", BPF_CGROUP_INET_INGRESS },
	{ "egress", BPF_CGROUP_INET_EGRESS },
};

static void print_link(const char *pin, int link_fd, int adopted)
{
	struct link_raw li;
	link_info(link_fd, &li);
	fputs("{\"link\":", stdout);
	json_str(stdout, pin);
	fprintf(stdout, ",\"id\":%u,\"progId\":%u,\"adopted\":%s}\n", li.id, li.prog_id,
		adopted ? "true" : "false");
}

// attach-cgroup PROG_PIN CGROUP_DIR HOOK LINK_PIN
// A live link already pinned at LINK_PIN on the same cgroup and hook is adopted: its program is
// replaced in place instead of adding a second attachment. A dead one (cgroup gone) is replaced.
static int cmd_attach_cgroup(int argc, char **argv)
{
	if (argc != 4)
		usage();
	const char *prog_pin = argv[0], *cgdir = argv[1], *hook = argv[2], *link_pin = argv[3];
	int type = -1;

	for (size_t i = 0; i < sizeof(cgroup_hooks) / sizeof(cgroup_hooks[0]); i++)
		if (strcmp(hook, cgroup_hooks[i].hook) == 0)
			type = cgroup_hooks[i].type;
	if (type < 0)
		fail(0, "unknown cgroup hook '%s'", hook);

	int prog_fd = obj_get(prog_pin, "program");
	int cg_fd = open(cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (cg_fd < 0 || fstat(cg_fd, &st))
		fail(errno, "open cgroup %s", cgdir);

	if (path_exists(link_pin)) {
		int link_fd = obj_get(link_pin, "link");
		struct link_raw li;
		link_info(link_fd, &li);
		// On 64-bit kernels a cgroup's id is its cgroupfs inode number; 0 once the cgroup is gone.
		if (li.type == BPF_LINK_TYPE_CGROUP && li.cgroup.cgroup_id == (__u64)st.st_ino &&
		    li.cgroup.attach_type == (__u32)type) {
			if (bpf_link_update(link_fd, prog_fd, NULL))
				fail(errno, "replace program of %s with %s", link_pin, prog_pin);
			print_link(link_pin, link_fd, 1);
			return 0;
		}
		if (unlink(link_pin))
			fail(errno, "remove stale link pin %s", link_pin);
	}

	int link_fd = bpf_link_create(prog_fd, cg_fd, type, NULL);
	if (link_fd < 0)
		fail(errno, "attach %s to cgroup %s as %s", prog_pin, cgdir, hook);
	pin_replace(link_fd, link_pin);
	print_link(link_pin, link_fd, 0);
	return 0;
}

// attach-tc PROG_PIN NETNS DEV ingress|egress LINK_PIN
// NETNS is a path (/run/netns/NAME, /proc/PID/ns/net) or a bare name under /run/netns.
// Uses a tcx link (kernel >= 6.6), created with the raw attach type libbpf 1.1 does not name.
static int cmd_attach_tc(int argc, char **argv)
{
	if (argc != 5)
		usage();
	const char *prog_pin = argv[0], *netns = argv[1], *dev = argv[2], *dir = argv[3],
		   *link_pin = argv[4];
	char nspath[PATH_MAX];
	int type;

	if (strcmp(dir, "ingress") == 0)
		type = WEFT_BPF_TCX_INGRESS;
	else if (strcmp(dir, "egress") == 0)
		type = WEFT_BPF_TCX_EGRESS;
	else
		fail(0, "direction must be ingress or egress, not '%s'", dir);

	if (strchr(netns, '/'))
		pathf(nspath, "%s", netns);
	else
		pathf(nspath, "/run/netns/%s", netns);

	int prog_fd = obj_get(prog_pin, "program");
	int ns_fd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (ns_fd < 0)
		fail(errno, "open netns %s", nspath);
	if (setns(ns_fd, CLONE_NEWNET))
		fail(errno, "enter netns %s", nspath);
	unsigned int ifindex = if_nametoindex(dev);
	if (!ifindex)
		fail(errno, "device %s in netns %s", dev, nspath);

	if (path_exists(link_pin)) {
		int link_fd = obj_get(link_pin, "link");
		struct link_raw li;
		link_info(link_fd, &li);
		// ifindex is 0 once the device is gone.
		if (li.type == WEFT_BPF_LINK_TYPE_TCX && li.tcx.ifindex == ifindex &&
		    li.tcx.attach_type == (__u32)type) {
			if (bpf_link_update(link_fd, prog_fd, NULL))
				fail(errno, "replace program of %s with %s", link_pin, prog_pin);
			print_link(link_pin, link_fd, 1);
			return 0;
		}
		if (unlink(link_pin))
			fail(errno, "remove stale link pin %s", link_pin);
	}

	int link_fd = bpf_link_create(prog_fd, ifindex, type, NULL);
	if (link_fd < 0)
		fail(errno, "attach %s to %s %s in netns %s (tcx)", prog_pin, dev, dir, nspath);
	pin_replace(link_fd, link_pin);
	print_link(link_pin, link_fd, 0);
	return 0;
}

// replace LINK_PIN PROG_PIN: swap the link's program atomically; the attachment stays.
static int cmd_replace(int argc, char **argv)
{
	if (argc != 2)
		usage();
	int link_fd = obj_get(argv[0], "link");
	int prog_fd = obj_get(argv[1], "program");
	struct link_raw li;

	link_info(link_fd, &li);
	__u32 old = li.prog_id;
	if (bpf_link_update(link_fd, prog_fd, NULL))
		fail(errno, "replace program of %s with %s", argv[0], argv[1]);
	link_info(link_fd, &li);
	fputs("{\"link\":", stdout);
	json_str(stdout, argv[0]);
	fprintf(stdout, ",\"id\":%u,\"progId\":%u,\"oldProgId\":%u}\n", li.id, li.prog_id, old);
	return 0;
}

// detach LINK_PIN: detach the link from its hook and remove the pin. A missing pin is not an error.
static int cmd_detach(int argc, char **argv)
{
	if (argc != 1)
		usage();
	const char *pin = argv[0];
	if (!path_exists(pin)) {
		fputs("{\"link\":", stdout);
		json_str(stdout, pin);
		fputs(",\"detached\":false}\n", stdout);
		return 0;
	}
	int fd = obj_get(pin, "link");
	// EINVAL/ENOLINK: already defunct (hook gone); unpinning frees it all the same.
	if (bpf_link_detach(fd) && errno != EINVAL && errno != ENOLINK)
		fail(errno, "detach %s", pin);
	if (unlink(pin))
		fail(errno, "unpin %s", pin);
	fputs("{\"link\":", stdout);
	json_str(stdout, pin);
	fputs(",\"detached\":true}\n", stdout);
	return 0;
}

static int cmd_link_info(int argc, char **argv)
{
	if (argc != 1)
		usage();
	int fd = obj_get(argv[0], "link");
	struct link_raw li;
	link_info(fd, &li);
	fputs("{\"link\":", stdout);
	json_str(stdout, argv[0]);
	fprintf(stdout, ",\"id\":%u,\"type\":%u,\"progId\":%u", li.id, li.type, li.prog_id);
	if (li.type == BPF_LINK_TYPE_CGROUP)
		fprintf(stdout, ",\"cgroupId\":%llu,\"attachType\":%u",
			(unsigned long long)li.cgroup.cgroup_id, li.cgroup.attach_type);
	else if (li.type == WEFT_BPF_LINK_TYPE_TCX)
		fprintf(stdout, ",\"ifindex\":%u,\"attachType\":%u", li.tcx.ifindex, li.tcx.attach_type);
	fputs("}\n", stdout);
	return 0;
}

// ---- maps ---------------------------------------------------------------------------------------

// map-dump MAP_PIN: every entry as hex; per-CPU maps give one value per possible CPU, concatenated.
static int cmd_map_dump(int argc, char **argv)
{
	if (argc != 1)
		usage();
	int fd = obj_get(argv[0], "map");
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		fail(errno, "map %s: info", argv[0]);
	int percpu = info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_PERCPU_ARRAY ||
		     info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	int ncpu = percpu ? libbpf_num_possible_cpus() : 1;
	size_t vsize = percpu ? ((info.value_size + 7) / 8 * 8) * (size_t)ncpu : info.value_size;
	unsigned char *key = calloc(1, info.key_size + 1), *next = calloc(1, info.key_size + 1),
		      *val = calloc(1, vsize + 1);
	if (!key || !next || !val)
		fail(ENOMEM, "map %s", argv[0]);

	fputs("{\"map\":", stdout);
	json_str(stdout, argv[0]);
	fprintf(stdout, ",\"type\":%u,\"keySize\":%u,\"valueSize\":%u,\"cpus\":%d,\"entries\":[",
		info.type, info.key_size, info.value_size, ncpu);
	int first = 1, n = 0;
	void *prev = NULL;
	while (n < (int)info.max_entries + 1 && bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, info.key_size);
		prev = key;
		n++;
		if (bpf_map_lookup_elem(fd, key, val))
			continue; // deleted meanwhile
		fputs(first ? "[" : ",[", stdout);
		json_hex(stdout, key, info.key_size);
		fputc(',', stdout);
		json_hex(stdout, val, percpu ? vsize : info.value_size);
		fputc(']', stdout);
		first = 0;
	}
	fputs("]}\n", stdout);
	return 0;
}

// ---- run ----------------------------------------------------------------------------------------

static unsigned char *from_hex(const char *hex, size_t *len)
{
	size_t n = strlen(hex);
	if (n % 2)
		fail(0, "odd-length hex '%.40s'", hex);
	unsigned char *out = calloc(1, n / 2 + 1);
	if (!out)
		fail(ENOMEM, "hex");
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			fail(0, "bad hex at %zu in '%.40s'", 2 * i, hex);
		out[i] = (unsigned char)b;
	}
	*len = n / 2;
	return out;
}

// run PROG_PIN [--ctx HEX] [--data HEX] [--repeat N]: BPF_PROG_TEST_RUN, for BPF unit tests on
// crafted input (packets in --data, context structs in --ctx) and for syscall programs.
static int cmd_run(int argc, char **argv)
{
	if (argc < 1)
		usage();
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	size_t ctx_len = 0, data_len = 0;
	unsigned char *ctx = NULL, *data = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--ctx") == 0 && i + 1 < argc)
			ctx = from_hex(argv[++i], &ctx_len);
		else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
			data = from_hex(argv[++i], &data_len);
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
			opts.repeat = (int)strtoul(argv[++i], NULL, 0);
		else
			usage();
	}
	int fd = obj_get(argv[0], "program");
	size_t out_cap = data_len + 4096;
	unsigned char *out = data ? calloc(1, out_cap) : NULL;
	if (ctx) {
		opts.ctx_in = ctx;
		opts.ctx_size_in = ctx_len;
	}
	if (data) {
		opts.data_in = data;
		opts.data_size_in = data_len;
		opts.data_out = out;
		opts.data_size_out = out_cap;
	}
	if (bpf_prog_test_run_opts(fd, &opts))
		fail(errno, "test-run %s", argv[0]);
	fprintf(stdout, "{\"retval\":%u,\"durationNs\":%u", opts.retval, opts.duration);
	if (data) {
		fputs(",\"dataOut\":", stdout);
		json_hex(stdout, out, opts.data_size_out);
	}
	fputs("}\n", stdout);
	return 0;
}

// ---- ringbuf ------------------------------------------------------------------------------------

// Frames on stdout, little-endian: u32 header (bit 31 = control, low 31 bits = payload length),
// then the payload. Data frames carry one record exactly as the BPF program wrote it.
// Control frames carry u32 kind + u64 value: kind 0 = ready (value 0), kind 1 = lost total.
#define FRAME_CONTROL 0x80000000u
#define CONTROL_READY 0
#define CONTROL_LOST 1

static volatile sig_atomic_t g_stop;
static unsigned char *g_out;
static size_t g_out_len, g_out_cap;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void flush_out(void)
{
	size_t off = 0;
	while (off < g_out_len) {
		ssize_t n = write(STDOUT_FILENO, g_out + off, g_out_len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE)
				exit(0); // the reader went away: nothing left to do
			fail(errno, "write records to stdout");
		}
		off += (size_t)n;
	}
	g_out_len = 0;
}

static void put_frame(__u32 header, const void *a, size_t alen, const void *b, size_t blen)
{
	if (g_out_len + 4 + alen + blen > g_out_cap)
		flush_out();
	if (4 + alen + blen > g_out_cap)
		fail(0, "record of %zu bytes exceeds --batch-bytes", alen + blen);
	memcpy(g_out + g_out_len, &header, 4);
	memcpy(g_out + g_out_len + 4, a, alen);
	if (blen)
		memcpy(g_out + g_out_len + 4 + alen, b, blen);
	g_out_len += 4 + alen + blen;
}

static void put_control(__u32 kind, __u64 value)
{
	put_frame(FRAME_CONTROL | 12, &kind, 4, &value, 8);
}

static int on_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	put_frame((__u32)size, data, size, NULL, 0);
	return 0;
}

static __u64 read_lost(int fd)
{
	__u32 zero = 0;
	__u64 v[1024] = {};
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) || bpf_map_lookup_elem(fd, &zero, v))
		return 0;
	if (info.type != BPF_MAP_TYPE_PERCPU_ARRAY)
		return v[0];
	__u64 sum = 0;
	int ncpu = libbpf_num_possible_cpus();
	for (int i = 0; i < ncpu && i < 1024; i++)
		sum += v[i];
	return sum;
}

static __u64 now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000 + (__u64)ts.tv_nsec / 1000;
}

static __u64 now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// ringbuf MAP_PIN [--lost-map MAP_PIN] [--batch-bytes N]
// Streams records until SIGTERM/SIGINT, stdout closing, or the parent dying.
// --lost-map names an array (or per-CPU array) whose key 0 counts events the program could not
// reserve room for; its total is reported as a control frame whenever it changes.
static int cmd_ringbuf(int argc, char **argv)
{
	if (argc < 1)
		usage();
	const char *pin = argv[0], *lost_pin = NULL;
	size_t batch = 1 << 20;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--lost-map") == 0 && i + 1 < argc)
			lost_pin = argv[++i];
		else if (strcmp(argv[i], "--batch-bytes") == 0 && i + 1 < argc)
			batch = strtoull(argv[++i], NULL, 0);
		else
			usage();
	}
	if (batch < 4096)
		batch = 4096;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 0; // parent already gone
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int fd = obj_get(pin, "ring buffer");
	int lost_fd = lost_pin ? obj_get(lost_pin, "lost counter map") : -1;
	g_out_cap = batch;
	g_out = malloc(g_out_cap);
	if (!g_out)
		fail(ENOMEM, "ring buffer output");
	struct ring_buffer *rb = ring_buffer__new(fd, on_record, NULL, NULL);
	if (!rb)
		fail(errno, "open ring buffer %s", pin);

	__u64 lost = read_lost(lost_fd), next_check = now_ms() + 200;
	put_control(CONTROL_READY, 0);
	put_control(CONTROL_LOST, lost);
	flush_out();
	while (!g_stop) {
		int n = ring_buffer__poll(rb, 100);
		if (n < 0 && n != -EINTR)
			fail(n, "poll ring buffer %s", pin);
		if (lost_fd >= 0 && now_ms() >= next_check) {
			__u64 l = read_lost(lost_fd);
			if (l != lost)
				put_control(CONTROL_LOST, l);
			lost = l;
			next_check = now_ms() + 200;
		}
		if (g_out_len)
			flush_out();
	}
	ring_buffer__free(rb);
	return 0;
}

// ---- map writes ---------------------------------------------------------------------------------

// map-write: applies a batch read from stdin, one operation per line:
//   u MAP_PIN KEYHEX VALUEHEX    create or replace an entry
//   d MAP_PIN KEYHEX             delete an entry (absent is not an error)
// Stops at the first failure, naming its line; prints {"updated":N,"deleted":N,"absent":N}.
#define MAP_WRITE_MAX_PINS 64
static int cmd_map_write(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		usage();
	char *pins[MAP_WRITE_MAX_PINS];
	int fds[MAP_WRITE_MAX_PINS], npins = 0;
	struct bpf_map_info infos[MAP_WRITE_MAX_PINS];
	long updated = 0, deleted = 0, absent = 0, lineno = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	while ((got = getline(&line, &cap, stdin)) > 0) {
		lineno++;
		oneline(line);
		if (!line[0])
			continue;
		char *save = NULL, *op = strtok_r(line, " ", &save), *pin = strtok_r(NULL, " ", &save),
		     *khex = strtok_r(NULL, " ", &save), *vhex = strtok_r(NULL, " ", &save);
		if (!op || !pin || !khex || (op[0] == 'u' && !vhex) || (op[0] != 'u' && op[0] != 'd'))
			fail(0, "line %ld: expected 'u PIN KEY VALUE' or 'd PIN KEY'", lineno);
		int fd = -1, idx = -1;
		for (int i = 0; i < npins; i++)
			if (strcmp(pins[i], pin) == 0)
				idx = i;
		if (idx < 0) {
			if (npins == MAP_WRITE_MAX_PINS)
				fail(0, "line %ld: more than %d maps in one batch", lineno, MAP_WRITE_MAX_PINS);
			idx = npins++;
			fds[idx] = obj_get(pin, "map");
			pins[idx] = strdup(pin);
			memset(&infos[idx], 0, sizeof(infos[idx]));
			__u32 ilen = sizeof(infos[idx]);
			if (bpf_obj_get_info_by_fd(fds[idx], &infos[idx], &ilen))
				fail(errno, "line %ld: map %s: info", lineno, pin);
		}
		fd = fds[idx];
		size_t klen, vlen;
		unsigned char *key = from_hex(khex, &klen);
		if (klen != infos[idx].key_size)
			fail(0, "line %ld: %s: key has %zu bytes, the map's keys have %u", lineno, pin, klen,
			     infos[idx].key_size);
		if (op[0] == 'u') {
			unsigned char *val = from_hex(vhex, &vlen);
			if (vlen != infos[idx].value_size)
				fail(0, "line %ld: %s: value has %zu bytes, the map's values have %u", lineno, pin,
				     vlen, infos[idx].value_size);
			if (bpf_map_update_elem(fd, key, val, BPF_ANY))
				fail(errno, "line %ld: update %s", lineno, pin);
			free(val);
			updated++;
		} else if (bpf_map_delete_elem(fd, key)) {
			if (errno != ENOENT)
				fail(errno, "line %ld: delete %s", lineno, pin);
			absent++;
		} else {
			deleted++;
		}
		free(key);
	}
	free(line);
	printf("{\"updated\":%ld,\"deleted\":%ld,\"absent\":%ld}\n", updated, deleted, absent);
	return 0;
}

// ---- map-server: binary batches, bpf_map_*_batch where the map supports it ------------------------
// The agent's write path (docs/bpf-loading.md, "map-server"). One long-lived process per agent
// reads batches from stdin and answers one JSON line per batch. Little-endian framing:
//   header  u32 magic 'WMB1' (0x31424d57), u32 nmaps, u32 nrecords, u32 body bytes
//   body    nmaps x { u16 len; pin bytes }
//           nrecords x { u8 op; u8 pad; u16 map; u32 keylen; u32 vallen; key; value }
//   op      1 update (BPF_ANY), 2 delete (absent is not an error),
//           3 map-in-map update: the value is the pin of the inner map, whose fd is stored
// A batch is checked whole before any write (map index, op, key and value sizes), so a malformed
// batch changes nothing. Records are then applied in order: each run of consecutive records with
// the same op and map goes to the kernel as one bpf_map_update_batch/bpf_map_delete_batch call
// (the kernel applies a batch's elements in array order, so every key ends as if the records had
// been applied one by one), or one call per record where the map type has no batch operation
// (remembered per map for the rest of the batch). A kernel failure stops the batch at the failing
// record (earlier records stay applied) and is reported with its index, op and map.
// Pins are opened afresh for every batch: a map unpinned and re-created at the same path between
// two batches is the new map.
// A write sent in parts (the agent streams a large one while it is still computing the rest) marks
// every part after the first with the magic 'WMBC' (0x43424d57). Parts of one write may be applied
// side by side (worker threads, below); a part that starts after another part of its write failed
// is read, not applied, and answered with {"error":"skipped: ..."}. The writer makes every part
// consistent in each prefix of itself and independent of the others (docs/services.md).
#define WMB_MAGIC 0x31424d57u
#define WMB_MAGIC_CONT 0x43424d57u
#define WMB_MAX_BODY (1u << 30)
#define WMB_OP_UPDATE 1
#define WMB_OP_DELETE 2
#define WMB_OP_INNER 3
#ifndef ENOTSUPP
#define ENOTSUPP 524 // kernel-internal: a map type without the batch operation
#endif

struct wmb_map {
	char *pin;
	int fd;
	int no_batch; // the kernel refused a batch call on this map: one call per record
	struct bpf_map_info info;
	__u32 vsize; // bytes a value has from user space (per-CPU maps: one 8-aligned slot per CPU)
};

struct wmb_rec {
	__u8 op;
	__u16 map;
	__u32 klen, vlen;
	const unsigned char *key, *val;
};

struct wmb_result {
	long updated, deleted, absent, calls;
	long read_us, apply_us; // the server's own time: body read (pipe), checks + bpf() calls
	unsigned long long start_us; // CLOCK_MONOTONIC when the batch's header was read
	char err[1536];
};

__attribute__((format(printf, 3, 4))) static int wmb_err(struct wmb_result *r, int err, const char *fmt, ...)
{
	char what[1024], why[256] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err)
		libbpf_strerror(err > 0 ? -err : err, why, sizeof(why));
	snprintf(r->err, sizeof(r->err), "%s%s%s", what, err ? ": " : "", why);
	oneline(r->err);
	return -1;
}

static int is_percpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static int is_map_in_map(__u32 type)
{
	return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS;
}

static const char *op_name(__u8 op)
{
	return op == WMB_OP_UPDATE ? "update" : op == WMB_OP_DELETE ? "delete" : "update (inner map)";
}

// Stores the fd of the map pinned at `inner` (a path, not NUL-terminated) under `key` of `outer`.
static int set_inner(struct wmb_map *m, const unsigned char *key, const unsigned char *inner,
		     __u32 ilen, long index, struct wmb_result *r)
{
	char path[PATH_MAX];
	if (ilen == 0 || ilen >= sizeof(path))
		return wmb_err(r, 0, "record %ld: %s %s: inner map pin of %u bytes", index,
			       op_name(WMB_OP_INNER), m->pin, ilen);
	memcpy(path, inner, ilen);
	path[ilen] = 0;
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return wmb_err(r, errno, "record %ld: %s %s: open pinned inner map %s", index,
			       op_name(WMB_OP_INNER), m->pin, path);
	r->calls++;
	int rc = bpf_map_update_elem(m->fd, key, &fd, BPF_ANY);
	int err = errno;
	close(fd);
	if (rc)
		return wmb_err(r, err, "record %ld: %s %s with %s", index, op_name(WMB_OP_INNER), m->pin,
			       path);
	r->updated++;
	return 0;
}

// One record, one syscall.
static int apply_one(struct wmb_map *m, const struct wmb_rec *rec, long index, struct wmb_result *r)
{
	if (rec->op == WMB_OP_INNER)
		return set_inner(m, rec->key, rec->val, rec->vlen, index, r);
	r->calls++;
	if (rec->op == WMB_OP_UPDATE) {
		if (bpf_map_update_elem(m->fd, rec->key, rec->val, BPF_ANY))
			return wmb_err(r, errno, "record %ld: update %s", index, m->pin);
		r->updated++;
		return 0;
	}
	if (bpf_map_delete_elem(m->fd, rec->key)) {
		if (errno != ENOENT)
			return wmb_err(r, errno, "record %ld: delete %s", index, m->pin);
		r->absent++;
		return 0;
	}
	r->deleted++;
	return 0;
}

static int g_no_batch; // WEFT_BPF_NO_BATCH=1: one call per record (tests, comparisons)
static __thread unsigned char *g_keys, *g_vals; // per map-server worker thread
static __thread size_t g_keys_cap, g_vals_cap;

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 65536;
	while (n < need)
		n *= 2;
	unsigned char *p = realloc(*buf, n);
	if (!p)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

// A run of records [from, to) with the same op (update or delete) on the same map.
static int apply_run(struct wmb_map *m, const struct wmb_rec *recs, long from, long to,
		     struct wmb_result *r)
{
	long i = from;
	__u32 ks = m->info.key_size, vs = m->vsize;
	__u8 op = recs[from].op;

	while (i < to && !m->no_batch && to - i > 1) {
		__u32 n = (__u32)(to - i);
		if (grow(&g_keys, &g_keys_cap, (size_t)n * ks) ||
		    (op == WMB_OP_UPDATE && grow(&g_vals, &g_vals_cap, (size_t)n * vs)))
			return wmb_err(r, ENOMEM, "record %ld: batch of %u", i, n);
		for (__u32 k = 0; k < n; k++) {
			memcpy(g_keys + (size_t)k * ks, recs[i + k].key, ks);
			if (op == WMB_OP_UPDATE)
				memcpy(g_vals + (size_t)k * vs, recs[i + k].val, vs);
		}
		LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
		__u32 count = n;
		r->calls++;
		int rc = op == WMB_OP_UPDATE ? bpf_map_update_batch(m->fd, g_keys, g_vals, &count, &opts)
					     : bpf_map_delete_batch(m->fd, g_keys, &count, &opts);
		if (rc == 0) {
			if (op == WMB_OP_UPDATE)
				r->updated += n;
			else
				r->deleted += n;
			return 0;
		}
		int err = errno;
		// Refused before touching any element (no batch op for this map type, or a check on the
		// whole call): the kernel leaves count as given. Then the records go one by one.
		if (err == ENOTSUPP || err == EOPNOTSUPP || count >= n) {
			m->no_batch = 1;
			break;
		}
		// count elements were applied; element i + count failed.
		if (op == WMB_OP_UPDATE)
			r->updated += count;
		else
			r->deleted += count;
		i += count;
		if (op == WMB_OP_DELETE && err == ENOENT) {
			r->absent++;
			i++;
			continue;
		}
		return wmb_err(r, err, "record %ld: %s %s (batch)", i, op_name(op), m->pin);
	}
	for (; i < to; i++)
		if (apply_one(m, &recs[i], i, r))
			return -1;
	return 0;
}

static int read_full(void *buf, size_t n)
{
	return fread(buf, 1, n, stdin) == n ? 0 : -1;
}

static void print_result(const struct wmb_result *r)
{
	if (r->err[0]) {
		fputs("{\"error\":", stdout);
		json_str(stdout, r->err);
		fputs("}\n", stdout);
	} else {
		printf("{\"updated\":%ld,\"deleted\":%ld,\"absent\":%ld,\"calls\":%ld,\"read_us\":%ld,"
		       "\"apply_us\":%ld,\"start_us\":%llu}\n",
		       r->updated, r->deleted, r->absent, r->calls, r->read_us, r->apply_us, r->start_us);
	}
	fflush(stdout);
}

// Parses, checks and applies one batch held in body[0..len).
static void apply_batch(const unsigned char *body, size_t len, __u32 nmaps, __u32 nrecs,
			struct wmb_result *r)
{
	struct wmb_map *maps = calloc(nmaps ? nmaps : 1, sizeof(*maps));
	struct wmb_rec *recs = calloc(nrecs ? nrecs : 1, sizeof(*recs));
	size_t off = 0;
	__u32 nopen = 0;
	int ncpu = 0;

	if (!maps || !recs) {
		wmb_err(r, ENOMEM, "batch of %u records", nrecs);
		goto out;
	}
	for (__u32 i = 0; i < nmaps; i++) {
		__u16 plen;
		if (off + 2 > len || (memcpy(&plen, body + off, 2), off + 2 + plen > len) || plen == 0 ||
		    plen >= PATH_MAX) {
			wmb_err(r, 0, "map table entry %u is truncated", i);
			goto out;
		}
		maps[i].pin = strndup((const char *)body + off + 2, plen);
		nopen = i + 1;
		off += 2 + (size_t)plen;
		maps[i].fd = bpf_obj_get(maps[i].pin);
		if (maps[i].fd < 0) {
			wmb_err(r, errno, "open pinned map %s", maps[i].pin);
			goto out_close;
		}
		__u32 ilen = sizeof(maps[i].info);
		if (bpf_obj_get_info_by_fd(maps[i].fd, &maps[i].info, &ilen)) {
			wmb_err(r, errno, "map %s: info", maps[i].pin);
			goto out_close;
		}
		maps[i].vsize = maps[i].info.value_size;
		if (is_percpu(maps[i].info.type)) {
			if (!ncpu)
				ncpu = libbpf_num_possible_cpus();
			maps[i].vsize = (maps[i].info.value_size + 7) / 8 * 8 * (__u32)ncpu;
		}
		// Map-in-map values are fds the kernel turns into map pointers: no batch calls.
		maps[i].no_batch = g_no_batch || is_map_in_map(maps[i].info.type);
	}
	for (__u32 i = 0; i < nrecs; i++) {
		struct wmb_rec *x = &recs[i];
		if (off + 12 > len) {
			wmb_err(r, 0, "record %u is truncated", i);
			goto out_close;
		}
		x->op = body[off];
		memcpy(&x->map, body + off + 2, 2);
		memcpy(&x->klen, body + off + 4, 4);
		memcpy(&x->vlen, body + off + 8, 4);
		off += 12;
		if ((size_t)x->klen + x->vlen > len - off) {
			wmb_err(r, 0, "record %u is truncated", i);
			goto out_close;
		}
		x->key = body + off;
		x->val = body + off + x->klen;
		off += (size_t)x->klen + x->vlen;
		if (x->map >= nmaps) {
			wmb_err(r, 0, "record %u: map index %u, the batch names %u maps", i, x->map, nmaps);
			goto out_close;
		}
		struct wmb_map *m = &maps[x->map];
		if (x->op != WMB_OP_UPDATE && x->op != WMB_OP_DELETE && x->op != WMB_OP_INNER) {
			wmb_err(r, 0, "record %u: unknown op %u", i, x->op);
			goto out_close;
		}
		if (x->klen != m->info.key_size) {
			wmb_err(r, 0, "record %u: %s %s: key has %u bytes, the map's keys have %u", i,
				op_name(x->op), m->pin, x->klen, m->info.key_size);
			goto out_close;
		}
		if (x->op == WMB_OP_UPDATE && x->vlen != m->vsize) {
			wmb_err(r, 0, "record %u: update %s: value has %u bytes, the map's values have %u", i,
				m->pin, x->vlen, m->vsize);
			goto out_close;
		}
		if (x->op == WMB_OP_UPDATE && is_map_in_map(m->info.type)) {
			wmb_err(r, 0, "record %u: update %s: a map-in-map takes inner map pins (op 3)", i,
				m->pin);
			goto out_close;
		}
		if (x->op == WMB_OP_INNER && !is_map_in_map(m->info.type)) {
			wmb_err(r, 0, "record %u: %s %s: not a map-in-map (type %u)", i, op_name(x->op),
				m->pin, m->info.type);
			goto out_close;
		}
		if (x->op == WMB_OP_DELETE && x->vlen != 0) {
			wmb_err(r, 0, "record %u: delete %s: carries a value", i, m->pin);
			goto out_close;
		}
	}
	if (off != len) {
		wmb_err(r, 0, "%zu bytes after the last record", len - off);
		goto out_close;
	}
	for (long i = 0; i < (long)nrecs;) {
		long j = i + 1;
		while (j < (long)nrecs && recs[j].op == recs[i].op && recs[j].map == recs[i].map)
			j++;
		struct wmb_map *m = &maps[recs[i].map];
		int rc = recs[i].op == WMB_OP_INNER ? 0 : apply_run(m, recs, i, j, r);
		for (long k = i; rc == 0 && recs[i].op == WMB_OP_INNER && k < j; k++)
			rc = apply_one(m, &recs[k], k, r);
		if (rc)
			break;
		i = j;
	}
out_close:
	for (__u32 i = 0; i < nopen; i++) {
		if (maps[i].fd >= 0)
			close(maps[i].fd);
		free(maps[i].pin);
	}
out:
	free(maps);
	free(recs);
}

// Batches are applied by worker threads (two where there are two CPUs), so that while one part of
// a streamed write is in the kernel the next can be too, on the other CPU. Order between writes is
// kept: a batch that starts a write (WMB1) waits until every earlier batch is done; the later
// parts of its write (WMBC) may run beside it and beside each other — the writer guarantees that
// parts of one write do not depend on each other's order (services.ts LbStream: each part is
// whole services, from empty). A part that starts after another part of its write failed is
// skipped; answers always go out in batch order.
struct wmb_job {
	unsigned char *body;
	__u32 len, nmaps, nrecs;
	int cont, done;
	__u64 t0, t1;
	struct wmb_result r;
	struct wmb_job *next_run;  // the queue of jobs to start
	struct wmb_job *next_answer; // every unanswered job, in batch order
};

static pthread_mutex_t g_wmb_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wmb_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_wmb_done = PTHREAD_COND_INITIALIZER;
static struct wmb_job *g_run_head, *g_run_tail, *g_answer_head, *g_answer_tail;
static long g_unanswered;
static int g_write_failed; // a batch of the current write failed

// Prints the finished jobs at the head of the answer list (called with g_wmb_mu held).
static void answer_ready(void)
{
	while (g_answer_head && g_answer_head->done) {
		struct wmb_job *j = g_answer_head;
		g_answer_head = j->next_answer;
		if (!g_answer_head)
			g_answer_tail = NULL;
		print_result(&j->r);
		free(j->body);
		free(j);
		g_unanswered--;
	}
	pthread_cond_broadcast(&g_wmb_done);
}

static void *wmb_worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_wmb_mu);
	for (;;) {
		while (!g_run_head)
			pthread_cond_wait(&g_wmb_work, &g_wmb_mu);
		struct wmb_job *j = g_run_head;
		g_run_head = j->next_run;
		if (!g_run_head)
			g_run_tail = NULL;
		int skip = j->cont && g_write_failed;
		pthread_mutex_unlock(&g_wmb_mu);
		__u64 t = now_us();
		if (skip)
			snprintf(j->r.err, sizeof(j->r.err),
				 "skipped: an earlier part of the same write failed (%u records not written)",
				 j->nrecs);
		else
			apply_batch(j->body, j->len, j->nmaps, j->nrecs, &j->r);
		j->r.read_us = (long)(j->t1 - j->t0);
		j->r.start_us = j->t0;
		j->r.apply_us = (long)(now_us() - t);
		pthread_mutex_lock(&g_wmb_mu);
		if (j->r.err[0])
			g_write_failed = 1;
		j->done = 1;
		answer_ready();
	}
	return NULL;
}

// map-server: serves batches from stdin until it closes (or the parent dies).
static int cmd_map_server(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		usage();
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 0;
	signal(SIGPIPE, SIG_IGN);
	// A 10k-service sync is ~2 MB: a 1 MiB pipe (the default maximum) instead of 64 KiB saves most
	// of the writer/reader switches, and lets the agent put a streamed write's parts into it
	// without waiting (loader.ts PipeWriter). Not a pipe, or not allowed: the default stays.
	(void)fcntl(STDIN_FILENO, F_SETPIPE_SZ, 1 << 20);
	// The agent opens its FIFO's read end non-blocking (so that opening does not wait for a
	// writer); reads here block.
	int fl = fcntl(STDIN_FILENO, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		(void)fcntl(STDIN_FILENO, F_SETFL, fl & ~O_NONBLOCK);
	const char *nb = getenv("WEFT_BPF_NO_BATCH");
	g_no_batch = nb && *nb && strcmp(nb, "0") != 0;
	// WEFT_BPF_MAP_WORKERS=N (1..8): worker threads, for comparisons; default 2 with 2+ CPUs.
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int workers = ncpu >= 2 ? 2 : 1;
	const char *nw = getenv("WEFT_BPF_MAP_WORKERS");
	if (nw && atoi(nw) >= 1 && atoi(nw) <= 8)
		workers = atoi(nw);
	for (int i = 0; i < workers; i++) {
		pthread_t t;
		int rc = pthread_create(&t, NULL, wmb_worker, NULL);
		if (rc)
			fail(rc, "map-server: start a worker thread");
		pthread_detach(t);
	}
	for (;;) {
		__u32 h[4];
		size_t got = fread(h, 1, sizeof(h), stdin);
		if (got == 0 && feof(stdin)) {
			// Every batch read is answered before the server exits.
			pthread_mutex_lock(&g_wmb_mu);
			while (g_unanswered > 0)
				pthread_cond_wait(&g_wmb_done, &g_wmb_mu);
			pthread_mutex_unlock(&g_wmb_mu);
			return 0;
		}
		if (got != sizeof(h))
			fail(0, "truncated batch header");
		if (h[0] != WMB_MAGIC && h[0] != WMB_MAGIC_CONT)
			fail(0, "bad batch magic 0x%08x (protocol out of step)", h[0]);
		if (h[3] > WMB_MAX_BODY)
			fail(0, "batch of %u bytes exceeds %u", h[3], WMB_MAX_BODY);
		struct wmb_job *j = calloc(1, sizeof(*j));
		if (!j || !(j->body = malloc(h[3] ? h[3] : 1)))
			fail(ENOMEM, "batch of %u bytes", h[3]);
		j->len = h[3];
		j->nmaps = h[1];
		j->nrecs = h[2];
		j->cont = h[0] == WMB_MAGIC_CONT;
		j->t0 = now_us();
		if (read_full(j->body, h[3]))
			fail(0, "truncated batch body (%u bytes announced)", h[3]);
		j->t1 = now_us();
		pthread_mutex_lock(&g_wmb_mu);
		if (!j->cont) {
			// A new write: after everything before it.
			while (g_unanswered > 0)
				pthread_cond_wait(&g_wmb_done, &g_wmb_mu);
			g_write_failed = 0;
		}
		if (g_answer_tail)
			g_answer_tail->next_answer = j;
		else
			g_answer_head = j;
		g_answer_tail = j;
		if (g_run_tail)
			g_run_tail->next_run = j;
		else
			g_run_head = j;
		g_run_tail = j;
		g_unanswered++;
		pthread_cond_signal(&g_wmb_work);
		pthread_mutex_unlock(&g_wmb_mu);
	}
}

// ---- map-create, map-set-inner ------------------------------------------------------------------

static const struct {
	const char *name;
	enum bpf_map_type type;
} map_types[] = {
	{ "hash", BPF_MAP_TYPE_HASH },
	{ "array", BPF_MAP_TYPE_ARRAY },
	{ "percpu_hash", BPF_MAP_TYPE_PERCPU_HASH },
	{ "percpu_array", BPF_MAP_TYPE_PERCPU_ARRAY },
	{ "lru_hash", BPF_MAP_TYPE_LRU_HASH },
	{ "lru_percpu_hash", BPF_MAP_TYPE_LRU_PERCPU_HASH },
	{ "lpm_trie", BPF_MAP_TYPE_LPM_TRIE },
	{ "array_of_maps", BPF_MAP_TYPE_ARRAY_OF_MAPS },
	{ "hash_of_maps", BPF_MAP_TYPE_HASH_OF_MAPS },
};

static unsigned long parse_u32(const char *what, const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || *end || !*s || v > 0xffffffffUL)
		fail(0, "%s: bad number '%s'", what, s);
	return v;
}

static void print_map(const char *pin, const struct bpf_map_info *info, int created)
{
	fputs("{\"pin\":", stdout);
	json_str(stdout, pin);
	fprintf(stdout,
		",\"id\":%u,\"type\":%u,\"keySize\":%u,\"valueSize\":%u,\"maxEntries\":%u,\"flags\":%u,"
		"\"name\":",
		info->id, info->type, info->key_size, info->value_size, info->max_entries,
		info->map_flags);
	json_str(stdout, info->name);
	fprintf(stdout, ",\"created\":%s}\n", created ? "true" : "false");
}

// map-create PIN TYPE KEY_SIZE VALUE_SIZE MAX_ENTRIES [--flags N] [--name NAME] [--inner PIN]
// Creates a map and pins it at PIN. Idempotent: a map already pinned there with the same type,
// sizes, max_entries and flags is kept with its entries ("created": false); one of another shape is
// refused, naming the difference. --inner: the template map of an array_of_maps/hash_of_maps.
static int cmd_map_create(int argc, char **argv)
{
	if (argc < 5)
		usage();
	const char *pin = argv[0], *tname = argv[1], *name = NULL, *inner = NULL;
	int type = -1;
	for (size_t i = 0; i < sizeof(map_types) / sizeof(map_types[0]); i++)
		if (strcmp(tname, map_types[i].name) == 0)
			type = map_types[i].type;
	if (type < 0)
		fail(0, "unknown map type '%s'", tname);
	__u32 ks = parse_u32("key size", argv[2]), vs = parse_u32("value size", argv[3]),
	      max = parse_u32("max entries", argv[4]), flags = 0;
	for (int i = 5; i < argc; i++) {
		if (strcmp(argv[i], "--flags") == 0 && i + 1 < argc)
			flags = parse_u32("--flags", argv[++i]);
		else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strcmp(argv[i], "--inner") == 0 && i + 1 < argc)
			inner = argv[++i];
		else
			usage();
	}
	if (name && strlen(name) >= BPF_OBJ_NAME_LEN)
		fail(0, "map name '%s' is longer than %d characters", name, BPF_OBJ_NAME_LEN - 1);

	for (int attempt = 0; attempt < 2; attempt++) {
		if (path_exists(pin)) {
			int fd = obj_get(pin, "map");
			struct bpf_map_info info = {};
			__u32 len = sizeof(info);
			if (bpf_obj_get_info_by_fd(fd, &info, &len))
				fail(errno, "map %s: info", pin);
			if (info.type != (__u32)type || info.key_size != ks || info.value_size != vs ||
			    info.max_entries != max || info.map_flags != flags)
				fail(0,
				     "%s is pinned with another shape: type %u key %u value %u entries %u flags %u, "
				     "wanted type %u key %u value %u entries %u flags %u",
				     pin, info.type, info.key_size, info.value_size, info.max_entries,
				     info.map_flags, type, ks, vs, max, flags);
			print_map(pin, &info, 0);
			return 0;
		}
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
		if (inner) {
			opts.inner_map_fd = obj_get(inner, "inner map template");
		} else if (type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS) {
			fail(0, "%s: a %s needs --inner PIN (its template map)", pin, tname);
		}
		int fd = bpf_map_create(type, name, ks, vs, max, &opts);
		if (fd < 0)
			fail(errno, "create %s map %s (key %u, value %u, entries %u, flags %u)", tname, pin, ks,
			     vs, max, flags);
		char dir[PATH_MAX];
		parent_dir(pin, dir, sizeof(dir));
		mkdir_p(dir);
		if (bpf_obj_pin(fd, pin)) {
			if (errno == EEXIST) { // pinned by someone else meanwhile: check that one
				close(fd);
				continue;
			}
			fail(errno, "pin %s", pin);
		}
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len))
			fail(errno, "map %s: info", pin);
		print_map(pin, &info, 1);
		return 0;
	}
	fail(EEXIST, "pin %s", pin);
}

// map-set-inner OUTER_PIN KEYHEX INNER_PIN: stores the inner map under KEY of a map-in-map.
static int cmd_map_set_inner(int argc, char **argv)
{
	if (argc != 3)
		usage();
	struct wmb_map m = { .pin = argv[0], .fd = obj_get(argv[0], "map") };
	__u32 len = sizeof(m.info);
	if (bpf_obj_get_info_by_fd(m.fd, &m.info, &len))
		fail(errno, "map %s: info", argv[0]);
	if (!is_map_in_map(m.info.type))
		fail(0, "%s is not a map-in-map (type %u)", argv[0], m.info.type);
	size_t klen;
	unsigned char *key = from_hex(argv[1], &klen);
	if (klen != m.info.key_size)
		fail(0, "%s: key has %zu bytes, the map's keys have %u", argv[0], klen, m.info.key_size);
	struct wmb_result r = {};
	if (set_inner(&m, key, (const unsigned char *)argv[2], (__u32)strlen(argv[2]), 0, &r))
		fail(0, "%s", r.err);
	int ifd = obj_get(argv[2], "inner map");
	struct bpf_map_info ii = {};
	len = sizeof(ii);
	if (bpf_obj_get_info_by_fd(ifd, &ii, &len))
		fail(errno, "map %s: info", argv[2]);
	fputs("{\"outer\":", stdout);
	json_str(stdout, argv[0]);
	fputs(",\"inner\":", stdout);
	json_str(stdout, argv[2]);
	printf(",\"innerId\":%u}\n", ii.id);
	return 0;
}

// ---- netns-cookie (services datapath: docs/services.md) -----------------------------------------
// netns-cookie NETNS: the namespace's cookie (SO_NETNS_COOKIE on a socket made inside it), the
// value bpf_get_netns_cookie() returns for sockets there. NETNS: a name under /run/netns or a path.
// → {"netns","cookie":"<decimal>"} (a string: cookies are u64).

#include <sys/socket.h>
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static int cmd_netns_cookie(int argc, char **argv)
{
	if (argc != 1)
		usage();
	const char *netns = argv[0];
	char nspath[PATH_MAX];
	if (strchr(netns, '/'))
		pathf(nspath, "%s", netns);
	else
		pathf(nspath, "/run/netns/%s", netns);
	int ns_fd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (ns_fd < 0)
		fail(errno, "open netns %s", nspath);
	if (setns(ns_fd, CLONE_NEWNET))
		fail(errno, "enter netns %s", nspath);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		fail(errno, "socket in netns %s", nspath);
	__u64 cookie = 0;
	socklen_t len = sizeof(cookie);
	if (getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
		fail(errno, "SO_NETNS_COOKIE in netns %s", nspath);
	fputs("{\"netns\":", stdout);
	json_str(stdout, nspath);
	printf(",\"cookie\":\"%llu\"}\n", (unsigned long long)cookie);
	return 0;
}

// ---- lookups for the proxy's accept path ----------------------------------------------------------

// map-lookup-server MAP_PIN: a long-lived lookup service for one map. Reads one key per line (hex)
// on stdin and answers one line each: the value in hex, or "-" when absent. Dies with its parent.
static int cmd_map_lookup_server(int argc, char **argv)
{
	if (argc != 1)
		usage();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int fd = obj_get(argv[0], "map");
	struct bpf_map_info info = {};
	__u32 ilen = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen))
		fail(errno, "map %s: info", argv[0]);
	unsigned char *val = calloc(1, info.value_size + 1);
	char *line = NULL, *out = calloc(1, 2 * (size_t)info.value_size + 2);
	size_t cap = 0;
	if (!val || !out)
		fail(ENOMEM, "map %s", argv[0]);
	static const char hexd[] = "0123456789abcdef";
	while (getline(&line, &cap, stdin) > 0) {
		oneline(line);
		size_t klen;
		unsigned char *key = from_hex(line, &klen);
		if (klen != info.key_size) {
			fputs("-\n", stdout);
		} else if (bpf_map_lookup_elem(fd, key, val) == 0) {
			for (__u32 i = 0; i < info.value_size; i++) {
				out[2 * i] = hexd[val[i] >> 4];
				out[2 * i + 1] = hexd[val[i] & 15];
			}
			out[2 * info.value_size] = '\n';
			fwrite(out, 1, 2 * (size_t)info.value_size + 1, stdout);
		} else {
			fputs("-\n", stdout);
		}
		fflush(stdout);
		free(key);
	}
	return 0;
}

// listen-exec ADDR PORT FD CMD...: creates a TCP listening socket with IP_TRANSPARENT (so
// bpf_sk_assign can hand it connections addressed to other hosts) and SO_REUSEADDR, bound to
// ADDR:PORT, places it at file descriptor FD and execs CMD, which inherits it. Node cannot set
// IP_TRANSPARENT itself; it takes the socket with net.Server.listen({ fd }).
static int cmd_listen_exec(int argc, char **argv)
{
	if (argc < 4)
		usage();
	int port = atoi(argv[1]), target = atoi(argv[2]), one = 1;
	if (port <= 0 || port > 65535 || target < 3)
		fail(0, "bad port %s or fd %s (want 1-65535 and >= 3)", argv[1], argv[2]);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		fail(errno, "socket");
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		fail(errno, "SO_REUSEADDR");
	if (setsockopt(s, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)))
		fail(errno, "IP_TRANSPARENT (needs CAP_NET_ADMIN)");
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	if (inet_pton(AF_INET, argv[0], &sa.sin_addr) != 1)
		fail(0, "bad IPv4 address %s", argv[0]);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)))
		fail(errno, "bind %s:%d", argv[0], port);
	if (listen(s, 4096))
		fail(errno, "listen");
	if (s != target) {
		if (dup2(s, target) < 0)
			fail(errno, "dup2");
		close(s);
	}
	execvp(argv[3], argv + 3);
	fail(errno, "exec %s", argv[3]);
}

// ---- main ---------------------------------------------------------------------------------------

int main(int argc, char **argv)
{
	const char *v = getenv("WEFT_BPF_VERBOSE");
	g_verbose = v && *v && strcmp(v, "0") != 0;
	libbpf_set_print(on_libbpf_print);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	if (argc < 2)
		usage();
	g_cmd = argv[1];
	char **rest = argv + 2;
	int n = argc - 2;

	if (strcmp(g_cmd, "load") == 0)
		return cmd_load(n, rest);
	if (strcmp(g_cmd, "attach-cgroup") == 0)
		return cmd_attach_cgroup(n, rest);
	if (strcmp(g_cmd, "attach-tc") == 0)
		return cmd_attach_tc(n, rest);
	if (strcmp(g_cmd, "replace") == 0)
		return cmd_replace(n, rest);
	if (strcmp(g_cmd, "detach") == 0)
		return cmd_detach(n, rest);
	if (strcmp(g_cmd, "link-info") == 0)
		return cmd_link_info(n, rest);
	if (strcmp(g_cmd, "map-dump") == 0)
		return cmd_map_dump(n, rest);
	if (strcmp(g_cmd, "run") == 0)
		return cmd_run(n, rest);
	if (strcmp(g_cmd, "map-write") == 0)
		return cmd_map_write(n, rest);
	if (strcmp(g_cmd, "map-server") == 0)
		return cmd_map_server(n, rest);
	if (strcmp(g_cmd, "map-create") == 0)
		return cmd_map_create(n, rest);
	if (strcmp(g_cmd, "map-set-inner") == 0)
		return cmd_map_set_inner(n, rest);
	if (strcmp(g_cmd, "ringbuf") == 0)
		return cmd_ringbuf(n, rest);
	if (strcmp(g_cmd, "map-lookup-server") == 0)
		return cmd_map_lookup_server(n, rest);
	if (strcmp(g_cmd, "listen-exec") == 0)
		return cmd_listen_exec(n, rest);
	if (strcmp(g_cmd, "netns-cookie") == 0)
		return cmd_netns_cookie(n, rest);
	usage();
}
