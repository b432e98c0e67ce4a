from django.contrib import admin

from .models import LLMChatRoom, RoomConversation


@admin.register(LLMChatRoom)
class LLMChatRoomAdmin(admin.ModelAdmin):
    list_display = ["__str__", "language", "situation", "level", "created_by", "created_at"]
    list_filter = ["language", "situation", "level", "created_at"]
    search_fields = ["title"]
    raw_id_fields = ["conversation", "created_by"]


@admin.register(RoomConversation)
class RoomConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "room", "conversation"]
    raw_id_fields = ["room", "conversation"]
