/* The C test host of libvkprompt (issue 19): an engine stand-in that owns its Vulkan instance
 * (with the validation layer and a messenger counting its messages) and device (timeline
 * semaphores), adopts it, scores and trains a golden case step by step in slices between its
 * own frames under its own queue lock, saves the adapter, provokes each error code, scores
 * with bf16 activations on a device of the library's own, and destroys everything. NativeHostTests compiles it with cc, runs it and checks what it prints
 * against the golden files:
 *   slices STEP N / notready CODE / loss STEP VALUE / frames N / locked_submits N /
 *   error NAME CODE MESSAGE / blocking_loss STEP VALUE / create CODE / bf16_scores CODE / validation_messages N
 * Usage: host MODEL_DIR CASE_DIR OUT_DIR. Exits non-zero on any validation message or on a
 * call that did not return what it should. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vkprompt.h"

static int validation_messages = 0;
static int failures = 0;
static pthread_mutex_t queue_mutex = PTHREAD_MUTEX_INITIALIZER;
static int locked_submits = 0;

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT type,
                                                 const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
    (void)user;
    if ((type & VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT) &&
        (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT))) {
        validation_messages++;
        fprintf(stderr, "validation: %s\n", data->pMessage);
    }
    return VK_FALSE;
}

static void lock_queue(void* user) { pthread_mutex_lock((pthread_mutex_t*)user); locked_submits++; }
static void unlock_queue(void* user) { pthread_mutex_unlock((pthread_mutex_t*)user); }

#define CHECK_VK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { fprintf(stderr, "%s failed: %d\n", #call, r_); exit(2); } } while (0)
/* A call that must succeed. */
#define CHECK_VKP(call) do { int r_ = (call); if (r_ != VKP_OK) { fprintf(stderr, "%s returned %d: %s\n", #call, r_, vkp_last_error()); exit(3); } } while (0)

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* text = malloc((size_t)n + 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    text[n] = 0;
    fclose(f);
    return text;
}

/* Prints an expected error; counts a failure where the code differs. */
static void expect_error(const char* name, int got, int want) {
    printf("error %s %d %s\n", name, got, vkp_last_error());
    if (got != want) { fprintf(stderr, "%s: expected %d, got %d\n", name, want, got); failures++; }
}

typedef struct {
    VkDevice device;
    VkQueue queue;
    VkFence fence;
    int count;
} frames;

/* One stand-in frame of the engine: its own submit (empty here) under its queue lock, waited for. */
static void frame(frames* f) {
    pthread_mutex_lock(&queue_mutex);
    VkSubmitInfo submit = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO };
    CHECK_VK(vkQueueSubmit(f->queue, 1, &submit, f->fence));
    pthread_mutex_unlock(&queue_mutex);
    CHECK_VK(vkWaitForFences(f->device, 1, &f->fence, VK_TRUE, UINT64_MAX));
    CHECK_VK(vkResetFences(f->device, 1, &f->fence));
    f->count++;
}

int main(int argc, char** argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s MODEL_DIR CASE_DIR OUT_DIR\n", argv[0]); return 2; }
    const char *model_dir = argv[1], *case_dir = argv[2], *out_dir = argv[3];
    char path[4096];

    /* The engine's instance: validation layer and a messenger of its own. */
    VkDebugUtilsMessengerCreateInfoEXT messenger_info = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
    };
    const char* layers[] = { "VK_LAYER_KHRONOS_validation" };
    const char* instance_extensions[] = { VK_EXT_DEBUG_UTILS_EXTENSION_NAME };
    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "vkprompt C host", .apiVersion = VK_API_VERSION_1_2 };
    VkInstanceCreateInfo instance_info = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pNext = &messenger_info, .pApplicationInfo = &app,
        .enabledLayerCount = 1, .ppEnabledLayerNames = layers, .enabledExtensionCount = 1, .ppEnabledExtensionNames = instance_extensions,
    };
    VkInstance instance;
    CHECK_VK(vkCreateInstance(&instance_info, NULL, &instance));
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger = (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT");
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger = (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT");
    VkDebugUtilsMessengerEXT messenger;
    CHECK_VK(create_messenger(instance, &messenger_info, NULL, &messenger));

    /* Its device: the first one, a compute queue, timeline semaphores. */
    uint32_t count = 1;
    VkPhysicalDevice physical;
    VkResult enumerated = vkEnumeratePhysicalDevices(instance, &count, &physical);
    if ((enumerated != VK_SUCCESS && enumerated != VK_INCOMPLETE) || count == 0) { fprintf(stderr, "no Vulkan device\n"); return 2; }
    uint32_t family_count = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, NULL);
    VkQueueFamilyProperties families[16];
    if (family_count > 16) family_count = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(physical, &family_count, families);
    uint32_t family = UINT32_MAX;
    for (uint32_t i = 0; i < family_count && family == UINT32_MAX; i++)
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = i;
    if (family == UINT32_MAX) { fprintf(stderr, "no compute queue\n"); return 2; }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo queue_info = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = family, .queueCount = 1, .pQueuePriorities = &priority };
    VkPhysicalDeviceVulkan12Features features12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .timelineSemaphore = VK_TRUE };
    VkPhysicalDeviceFeatures2 features = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &features12 };
    VkDeviceCreateInfo device_info = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &features, .queueCreateInfoCount = 1, .pQueueCreateInfos = &queue_info };
    VkDevice device;
    CHECK_VK(vkCreateDevice(physical, &device_info, NULL, &device));
    frames f = { .device = device };
    vkGetDeviceQueue(device, family, 0, &f.queue);
    VkFenceCreateInfo fence_info = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    CHECK_VK(vkCreateFence(device, &fence_info, NULL, &f.fence));

    /* Lent to the library as made, with the engine's queue lock. */
    vkp_host_device host = {
        .size = sizeof(vkp_host_device),
        .get_instance_proc_addr = vkGetInstanceProcAddr,
        .instance = instance, .physical_device = physical, .device = device,
        .api_version = VK_API_VERSION_1_2, .queue_family_index = family, .queue_index = 0,
        .enabled_features = &features,
        .lock_queue = lock_queue, .unlock_queue = unlock_queue, .user = &queue_mutex,
    };
    vkp_context* ctx = NULL;
    CHECK_VKP(vkp_context_adopt(&host, &ctx));
    vkp_model* model = NULL;
    /* vkp_model_open, the call of hosts built before vkp_model_open2, keeps fp32 activations:
       the golden values' tolerances are fp32's on any device. */
    CHECK_VKP(vkp_model_open(ctx, model_dir, "fp32", &model));

    /* Scoring, written as vkprompt score prints it. */
    snprintf(path, sizeof path, "%s/data.jsonl", case_dir);
    char* data = read_file(path);
    snprintf(path, sizeof path, "%s/prompt0.safetensors", case_dir);
    char* scores = NULL;
    CHECK_VKP(vkp_score(model, path, data, &scores));
    snprintf(path, sizeof path, "%s/scores.jsonl", out_dir);
    FILE* out = fopen(path, "w");
    fputs(scores, out);
    fclose(out);
    vkp_free(scores);

    /* Training the golden 3 steps, each advanced a slice per frame, then polled between frames. */
    char options[8192];
    snprintf(options, sizeof options,
             "{\"init\":\"file:%s/prompt0.safetensors\",\"batch_size\":2,\"no_shuffle\":true,\"dropout\":0,\"lr\":0.3,\"seed\":0,\"steps\":3}", case_dir);
    vkp_trainer* trainer = NULL;
    CHECK_VKP(vkp_trainer_create(model, options, data, &trainer));
    for (int step = 1; step <= 3; step++) {
        CHECK_VKP(vkp_trainer_begin_step(trainer));
        int slices = 0, rc;
        VkSemaphore timeline = VK_NULL_HANDLE;
        uint64_t value = 0;
        do {
            frame(&f);
            /* The first slice of the first step with a budget nothing fits in: one op alone. */
            rc = vkp_trainer_advance(trainer, step == 1 && slices == 0 ? 0.001 : 4.0, &timeline, &value);
            if (step == 1 && slices == 0) printf("notready %d\n", rc);
            if (rc != VKP_OK && rc != VKP_NOT_READY) { fprintf(stderr, "advance: %d %s\n", rc, vkp_last_error()); return 3; }
            slices++;
        } while (rc == VKP_NOT_READY);
        printf("slices %d %d\n", step, slices);
        double loss = 0;
        while ((rc = vkp_trainer_poll(trainer, &loss)) == VKP_NOT_READY) frame(&f);
        if (rc != VKP_OK) { fprintf(stderr, "poll: %d %s\n", rc, vkp_last_error()); return 3; }
        /* The ticket is the engine's to wait on too: the last slice's value is reached. */
        VkSemaphoreWaitInfo wait = { .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO, .semaphoreCount = 1, .pSemaphores = &timeline, .pValues = &value };
        CHECK_VK(vkWaitSemaphores(device, &wait, 0));
        printf("loss %d %.17g\n", step, loss);
    }
    printf("frames %d\nlocked_submits %d\n", f.count, locked_submits);
    snprintf(path, sizeof path, "%s/adapter", out_dir);
    CHECK_VKP(vkp_trainer_save_adapter(trainer, path));

    /* Each error code, provoked. */
    vkp_trainer* bad = NULL;
    expect_error("ARGUMENT", vkp_trainer_create(model, "{\"bogus_option\":1}", data, &bad), VKP_ERROR_ARGUMENT);
    if (bad) { fprintf(stderr, "a failed vkp_trainer_create gave a handle\n"); failures++; }
    vkp_model* missing = NULL;
    expect_error("FILE", vkp_model_open(ctx, "/nonexistent/vkprompt-model", NULL, &missing), VKP_ERROR_FILE);
    vkp_host_device capped = host;
    capped.memory_cap_bytes = 4096;
    vkp_context* small = NULL;
    CHECK_VKP(vkp_context_adopt(&capped, &small));
    vkp_model* too_big = NULL;
    expect_error("DOES_NOT_FIT", vkp_model_open(small, model_dir, "fp32", &too_big), VKP_ERROR_DOES_NOT_FIT);
    vkp_context_destroy(small);
    vkp_host_device no_timeline = host;
    VkPhysicalDeviceFeatures2 no_features = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2 };
    no_timeline.enabled_features = &no_features;
    vkp_context* refused = NULL;
    expect_error("DEVICE", vkp_context_adopt(&no_timeline, &refused), VKP_ERROR_DEVICE);
    expect_error("ARGUMENT_STEPS", vkp_trainer_begin_step(trainer), VKP_ERROR_ARGUMENT);
    /* A failed open sets *out to NULL, whatever it held. */
    vkp_model* bad_model = (vkp_model*)&failures;
    expect_error("ARGUMENT_ACTIVATIONS", vkp_model_open2(ctx, model_dir, "fp32", "fp8", &bad_model), VKP_ERROR_ARGUMENT);
    if (bad_model) { fprintf(stderr, "a vkp_model_open2 refused for its activations left *out set\n"); failures++; }
    /* The host's device was made without storageBuffer16BitAccess: no 16-bit activations on it. */
    bad_model = (vkp_model*)&failures;
    expect_error("DEVICE_ACTIVATIONS", vkp_model_open2(ctx, model_dir, "fp32", "bf16", &bad_model), VKP_ERROR_DEVICE);
    if (bad_model) { fprintf(stderr, "a vkp_model_open2 refused by the device left *out set\n"); failures++; }

    /* Handles misused: refused with VKP_ERROR_ARGUMENT, or, by the destroy calls (which return
       nothing), with a last error and the object kept; never a crash, never another object. */
    vkp_context_destroy(ctx);
    printf("refused CONTEXT_WITH_MODELS %s\n", vkp_last_error());
    vkp_model_close(model);
    printf("refused MODEL_WITH_TRAINERS %s\n", vkp_last_error());
    char* none = NULL;
    expect_error("STRAY_HANDLE", vkp_score((vkp_model*)(uintptr_t)0xdeadbeef000, NULL, data, &none), VKP_ERROR_ARGUMENT);
    expect_error("WRONG_TYPE", vkp_score((vkp_model*)ctx, NULL, data, &none), VKP_ERROR_ARGUMENT);
    vkp_model_close((vkp_model*)ctx);
    printf("refused WRONG_TYPE_CLOSE %s\n", vkp_last_error());
    vkp_trainer* once = NULL;
    CHECK_VKP(vkp_trainer_create(model, options, data, &once));
    vkp_trainer_destroy(once);
    vkp_trainer_destroy(once);
    printf("refused DOUBLE_DESTROY %s\n", vkp_last_error());
    vkp_host_device null_device = host;
    null_device.device = VK_NULL_HANDLE;
    vkp_context* nulled = NULL;
    expect_error("NULL_DEVICE", vkp_context_adopt(&null_device, &nulled), VKP_ERROR_ARGUMENT);
    vkp_free((void*)vkp_last_error()); /* the library's own string: ignored, never freed twice */
    expect_error("PROMPT_TOO_LONG", vkp_trainer_create(model, "{\"prompt_length\":5000000}", data, &bad), VKP_ERROR_ARGUMENT);

    /* The blocking step of a second trainer: step 1 again. */
    vkp_trainer* blocking = NULL;
    CHECK_VKP(vkp_trainer_create(model, options, data, &blocking));
    double blocking_loss = 0;
    CHECK_VKP(vkp_trainer_step(blocking, &blocking_loss));
    printf("blocking_loss 1 %.17g\n", blocking_loss);
    vkp_trainer_destroy(blocking);

    vkp_trainer_destroy(trainer);
    vkp_model_close(model);
    vkp_context_destroy(ctx);

    /* The library's own device, through the system loader (Silk.NET under Native AOT). */
    vkp_context* own = NULL;
    int created = vkp_context_create(NULL, &own);
    printf("create %d %s\n", created, created == VKP_OK ? "" : vkp_last_error());
    if (created != VKP_OK) failures++;

    /* bf16 activations on it (the library enables 16-bit storage where the device has it), scored as above. */
    vkp_model* bf16 = NULL;
    char* bf16_scores = NULL;
    int scored = created != VKP_OK ? created : vkp_model_open2(own, model_dir, "fp32", "bf16", &bf16);
    if (scored == VKP_OK) {
        snprintf(path, sizeof path, "%s/prompt0.safetensors", case_dir);
        scored = vkp_score(bf16, path, data, &bf16_scores);
    }
    printf("bf16_scores %d %s\n", scored, scored == VKP_OK ? "" : vkp_last_error());
    if (scored == VKP_OK) {
        snprintf(path, sizeof path, "%s/scores-bf16.jsonl", out_dir);
        out = fopen(path, "w");
        fputs(bf16_scores, out);
        fclose(out);
    } else failures++;
    vkp_free(bf16_scores);
    vkp_model_close(bf16);
    vkp_context_destroy(own);

    free(data);
    vkDestroyFence(device, f.fence, NULL);
    vkDestroyDevice(device, NULL);
    destroy_messenger(instance, messenger, NULL);
    vkDestroyInstance(instance, NULL);
    printf("validation_messages %d\n", validation_messages);
    return validation_messages > 0 || failures > 0 ? 1 : 0;
}
