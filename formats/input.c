// input.c: opening input files without hanging on a FIFO or a device; JSON strings that cJSON
// would cut short.
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

FILE *fopen_regular(const char *path, uint64_t *size, HpErr *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO without a writer would block here
    if (fd < 0) return hp_fail(err, "cannot open: %s", strerror(errno)), NULL;
    struct stat st;
    int flags;
    FILE *fp = NULL;
    if (fstat(fd, &st) != 0)
        hp_fail(err, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        hp_fail(err, "not a regular file");
    else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
             !(fp = fdopen(fd, "rb")))
        hp_fail(err, "cannot open: %s", strerror(errno));
    if (!fp) {
        close(fd);
        return NULL;
    }
    if (size) *size = (uint64_t)st.st_size;
    return fp;
}

// The first string of JSON text (cJSON parsed it; a string left open, which JSON cannot hold,
// ends the search) that holds an escaped NUL, \u0000, where cJSON's copy of the string ends. Returns NULL if there is none; else the member name it is in
// (the last name before it; NULL with *len 0 if none) or is, as written in text, *len bytes long
// (*is_name: the string is that name). *found tells whether there is one.
static const char *escaped_nul(const char *text, int *len, bool *is_name, bool *found) {
    const char *name = NULL;
    int name_len = 0;
    *found = false;
    for (const char *p = strchr(text, '"'); p; p = strchr(p + 1, '"')) {  // outside strings, a '"' opens one
        const char *s = p + 1;
        bool nul = false;
        for (p = s; *p != '"'; p++) {
            if (*p == '\0' || (*p == '\\' && p[1] == '\0')) return NULL;  // not JSON: no string ends here
            if (*p == '\\') nul |= strncmp(++p, "u0000", 5) == 0;  // an escape: '\\' and its next character
        }
        const char *after = p + 1 + strspn(p + 1, " \t\r\n");
        *is_name = *after == ':';
        if (*is_name) name = s, name_len = (int)(p - s);
        if (nul) {
            *found = true;
            *len = name_len;
            return name;
        }
    }
    return NULL;
}

int json_check_nul(const char *text, const char *what, HpErr *err) {
    int len = 0;
    bool is_name, found;
    const char *name = escaped_nul(text, &len, &is_name, &found);
    if (!found) return 0;
    if (len > 64) len = 64;
    if (is_name) return hp_fail(err, "%s: a key with an escaped NUL (\\u0000): \"%.*s\"", what, len, name);
    if (name) return hp_fail(err, "%s: \"%.*s\" holds a string with an escaped NUL (\\u0000)", what, len, name);
    return hp_fail(err, "%s: a string with an escaped NUL (\\u0000)", what);
}
